import { checkMetadata } from '../../model/index.js';
import type { ClaimedNode, ClaimRequest } from '../../protocol/repository.js';
import { Batcher } from '../batcher.js';
import { type ClaimPlan, claimedByPlan, claimNode, newClaim, planClaim } from './claim.js';
import type { EtcdContext } from './context.js';
import { INLINE_DEPENDENTS, INLINE_READS } from './limits.js';
import { seenForClaim } from './node-read.js';
import { merge } from './nodes.js';
import type { ClaimRecord, NodeRecord } from './records.js';
import { get } from './store.js';

interface Call {
  req: ClaimRequest;
  claim: ClaimRecord;
  now: number;
  /** Ops and reads its plan took when the call arrived (the plan itself is made again as the batch leaves). */
  weight: number;
}

interface Planned {
  plan: ClaimPlan;
  /** Dependents whose state this process has not seen: read along, so the node's finish need not read first. */
  unseen: string[];
}

/** The claimed node, or nothing: the call goes on alone (`sent`: in a batch that may have committed). */
type Answer = { claimed: ClaimedNode } | { alone: true; sent: boolean };

/**
 * This process's concurrent claims as one etcd transaction: each claim's
 * compares and writes side by side, so on a busy agent process one round
 * trip (and one raft entry) serves many slots. Only claims this process can
 * decide on what it last saw (a READY node, SeenState) go in a batch, planned
 * as the batch leaves (the batch before may have changed what they saw); the
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
        weight: (c) => c.weight,
        key: (c) => `${c.req.runId}\u0000${c.req.node}`,
      },
      (calls) => this.send(calls),
    );
  }

  async claim(req: ClaimRequest): Promise<ClaimedNode | undefined> {
    checkMetadata(req.metadata);
    const now = this.ctx.clock.now();
    const claim = newClaim(this.ctx, req, now);
    // Batchable when this process saw the node READY; the plan itself is made as the batch leaves.
    const seen = seenForClaim(this.ctx, req.runId, req.node)?.node?.rec;
    // Open until claimed and finished: a seal witness for the finishes of its run meanwhile (seal.ts).
    if (seen) this.ctx.seen.mayBeOpen(req.runId, req.node);
    const weight = seen && claimWeight(seen);
    if (!weight || weight > INLINE_READS) return claimNode(this.ctx, req, { claim });
    const answer = await this.batcher.submit({ req, claim, now, weight });
    if ('claimed' in answer) return answer.claimed;
    return claimNode(this.ctx, req, { claim, fresh: true, inDoubt: answer.sent });
  }

  /** A batchable plan from what this process saw, or undefined: the claim goes alone after all. */
  private plan(req: ClaimRequest, claim: ClaimRecord, now: number): Planned | undefined {
    const seen = seenForClaim(this.ctx, req.runId, req.node);
    const plan = seen && planClaim(this.ctx, req, seen, claim, now);
    if (!plan || plan === 'own' || claimWeight(plan.next) > INLINE_READS) return undefined;
    const down = plan.next.down.length <= INLINE_DEPENDENTS ? plan.next.down : [];
    const unseen = down.filter(
      (d) => !this.ctx.seen.node(req.runId, d) && this.ctx.topology.get(req.runId, d) !== undefined,
    );
    return { plan, unseen };
  }

  private async send(calls: Call[]): Promise<Answer[]> {
    const planned = calls.map((c) => this.plan(c.req, c.claim, c.now));
    const sent = calls.flatMap((c, i) => (planned[i] ? [{ c, p: planned[i] }] : []));
    const answers: Answer[] = calls.map(() => ({ alone: true, sent: false }));
    if (sent.length === 0) return answers;
    let res: Awaited<ReturnType<EtcdContext['store']['txn']>>;
    try {
      res = await this.ctx.store.txn({
        compare: sent.flatMap(({ p }) => p.plan.compare),
        success: sent.flatMap(({ c, p }) => [
          ...p.plan.reads,
          ...p.unseen.map((d) => get(this.ctx.keys.node(c.req.runId, d))),
          ...p.plan.ops,
        ]),
      });
    } catch {
      // Whatever the error (a lapsed lease, a lost member), each claim learns its own fate alone.
      for (const [i, p] of planned.entries()) if (p) answers[i] = { alone: true, sent: true };
      return answers;
    }
    // Even a batch whose compares failed may have committed: the etcd client repeats a call on its own.
    if (!res.succeeded) {
      for (const [i, p] of planned.entries()) if (p) answers[i] = { alone: true, sent: true };
      return answers;
    }
    let at = 0;
    for (const [i, c] of calls.entries()) {
      const p = planned[i];
      if (!p) continue;
      const responses = res.responses.slice(at, at + p.plan.reads.length);
      at += p.plan.reads.length;
      for (const d of p.unseen) {
        const kv = res.responses[at++]!.response_range.kvs[0];
        const t = this.ctx.topology.get(c.req.runId, d);
        if (kv && t) this.ctx.seen.setNode(c.req.runId, merge(t, kv.value), kv.mod_revision);
      }
      at += p.plan.ops.length;
      answers[i] = {
        claimed: claimedByPlan(this.ctx, c.req, c.claim, p.plan, res.header.revision, responses),
      };
    }
    return answers;
  }
}

/** Ops and reads a claim of this node takes in a batch, at most: its inputs, its attempts, its writes, its dependents. */
function claimWeight(rec: NodeRecord): number {
  return (
    rec.up.length +
    (rec.a > 0 ? 1 : 0) +
    CLAIM_WRITES +
    (rec.spec.timeout ? 1 : 0) +
    Math.min(rec.down.length, INLINE_DEPENDENTS)
  );
}

/** planClaim's ops for a READY node: ready, running, two open-node keys, the node, the claim (and a timeout item when the node has a timeout). */
const CLAIM_WRITES = 6;
