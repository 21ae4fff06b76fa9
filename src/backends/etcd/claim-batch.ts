import { type ClaimedNode, type ClaimRequest, checkMetadata } from '../../protocol/repository.js';
import { Batcher } from '../batcher.js';
import type { EtcdContext } from './context.js';
import { INLINE_DEPENDENTS } from './fanout.js';
import { seenForClaim } from './node-read.js';
import { merge } from './nodes.js';
import type { ClaimRecord } from './records.js';
import { get } from './store.js';
import {
  type ClaimPlan,
  claimedByPlan,
  claimNode,
  INLINE_READS,
  newClaim,
  planClaim,
} from './transitions.js';

interface Call {
  req: ClaimRequest;
  claim: ClaimRecord;
  plan: ClaimPlan;
  /** Dependents whose state this process has not seen: read along, so the node's finish need not read first. */
  unseen: string[];
}

/** The claimed node, or nothing: the batch did not commit (or may have), so the call goes on alone. */
type Answer = { claimed: ClaimedNode } | { alone: true };

/**
 * This process's concurrent claims as one etcd transaction: each claim's
 * compares and writes side by side, so on a busy agent process one round
 * trip (and one raft entry) serves many slots. Only claims this process can
 * decide on what it last saw (a READY node, SeenState) go in a batch; the
 * others, and every claim of a batch that did not commit (one stale compare
 * fails them all) or whose outcome is unknown, go on alone with the same
 * claim id: a fresh read then tells whether the batch made it theirs.
 */
export class ClaimBatcher {
  private readonly batcher: Batcher<Call, Answer>;

  constructor(private readonly ctx: EtcdContext) {
    this.batcher = new Batcher(
      {
        maxCalls: 32,
        maxWeight: INLINE_READS,
        weight: (c) => c.plan.reads.length + c.unseen.length + c.plan.ops.length,
        key: (c) => `${c.req.runId}\u0000${c.req.node}`,
      },
      (calls) => this.send(calls),
    );
  }

  async claim(req: ClaimRequest): Promise<ClaimedNode | undefined> {
    checkMetadata(req.metadata);
    const now = this.ctx.clock.now();
    const claim = newClaim(this.ctx, req, now);
    const seen = seenForClaim(this.ctx, req.runId, req.node);
    const plan = seen && planClaim(this.ctx, req, seen, claim, now);
    if (!plan || plan === 'own' || plan.reads.length + plan.ops.length + INLINE_DEPENDENTS > INLINE_READS)
      return claimNode(this.ctx, req, { claim });
    const down = plan.next.down.length <= INLINE_DEPENDENTS ? plan.next.down : [];
    const unseen = down.filter(
      (d) => !this.ctx.seen.node(req.runId, d) && this.ctx.topology.get(req.runId, d) !== undefined,
    );
    const answer = await this.batcher.submit({ req, claim, plan, unseen });
    if ('claimed' in answer) return answer.claimed;
    return claimNode(this.ctx, req, { claim, fresh: true, inDoubt: true });
  }

  private async send(calls: Call[]): Promise<Answer[]> {
    let res: Awaited<ReturnType<EtcdContext['store']['txn']>>;
    try {
      res = await this.ctx.store.txn({
        compare: calls.flatMap((c) => c.plan.compare),
        success: calls.flatMap((c) => [
          ...c.plan.reads,
          ...c.unseen.map((d) => get(this.ctx.keys.node(c.req.runId, d))),
          ...c.plan.ops,
        ]),
      });
    } catch {
      // Whatever the error (a lapsed lease, a lost member), each claim learns its own fate alone.
      return calls.map(() => ({ alone: true }));
    }
    // Even a batch whose compares failed may have committed: the etcd client repeats a call on its own.
    if (!res.succeeded) return calls.map(() => ({ alone: true }));
    let at = 0;
    return calls.map((c) => {
      const responses = res.responses.slice(at, at + c.plan.reads.length);
      at += c.plan.reads.length;
      for (const d of c.unseen) {
        const kv = res.responses[at++]!.response_range.kvs[0];
        const t = this.ctx.topology.get(c.req.runId, d);
        if (kv && t) this.ctx.seen.setNode(c.req.runId, merge(t, kv.value), kv.mod_revision);
      }
      at += c.plan.ops.length;
      return { claimed: claimedByPlan(this.ctx, c.req, c.claim, c.plan, res.header.revision, responses) };
    });
  }
}
