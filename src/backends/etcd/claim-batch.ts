import type { ClaimedNode, ClaimRequest } from '../../protocol/repository.js';
import { Batcher } from '../batcher.js';
import type { EtcdContext } from './context.js';
import { seenForClaim } from './node-read.js';
import type { ClaimRecord } from './records.js';
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
}

/** The claimed node, or nothing: the batch did not commit (or may have), so the call goes on alone. */
type Answer = { claimed: ClaimedNode } | { alone: true; inDoubt: boolean };

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
        weight: (c) => c.plan.reads.length + c.plan.ops.length,
        key: (c) => `${c.req.runId}\u0000${c.req.node}`,
      },
      (calls) => this.send(calls),
    );
  }

  async claim(req: ClaimRequest): Promise<ClaimedNode | undefined> {
    const now = this.ctx.clock.now();
    const claim = newClaim(this.ctx, req, now);
    const seen = seenForClaim(this.ctx, req.runId, req.node);
    const plan = seen && planClaim(this.ctx, req, seen, claim, now);
    if (!plan || plan === 'own' || plan.reads.length + plan.ops.length > INLINE_READS)
      return claimNode(this.ctx, req, { claim });
    const answer = await this.batcher.submit({ req, claim, plan });
    if ('claimed' in answer) return answer.claimed;
    return claimNode(this.ctx, req, { claim, fresh: true, inDoubt: answer.inDoubt });
  }

  private async send(calls: Call[]): Promise<Answer[]> {
    let res: Awaited<ReturnType<EtcdContext['store']['txn']>>;
    try {
      res = await this.ctx.store.txn({
        compare: calls.flatMap((c) => c.plan.compare),
        success: calls.flatMap((c) => [...c.plan.reads, ...c.plan.ops]),
      });
    } catch {
      // Whatever the error (a lapsed lease, a lost member), each claim learns its own fate alone.
      return calls.map(() => ({ alone: true, inDoubt: true }));
    }
    if (!res.succeeded) return calls.map(() => ({ alone: true, inDoubt: false }));
    let at = 0;
    return calls.map((c) => {
      const responses = res.responses.slice(at, at + c.plan.reads.length);
      at += c.plan.reads.length + c.plan.ops.length;
      return { claimed: claimedByPlan(this.ctx, c.req, c.claim, c.plan, res.header.revision, responses) };
    });
  }
}
