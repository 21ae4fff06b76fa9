import { checkConclusion, checkMetadata, checkStartedAt } from '../../model/index.js';
import type { FinishRequest } from '../../protocol/repository.js';
import { Batcher } from '../batcher.js';
import type { EtcdContext } from './context.js';
import {
  committed,
  type FinishAfter,
  type FinishPlan,
  finishNode,
  finishOutput,
  followUp,
  planFinish,
  withProbe,
} from './finish.js';
import { FINISH_FIXED_OPS, INLINE_DEPENDENTS, INLINE_READS, OPS_PER_DEPENDENT } from './limits.js';
import { seenForFinish } from './node-read.js';
import { sealProbe, witnessOpen } from './seal.js';

interface Call {
  req: FinishRequest;
  now: number;
  output: Buffer;
}

type Answer = { after: FinishAfter } | { alone: true };

/**
 * This process's concurrent finishes as one etcd transaction, as ClaimBatcher
 * does for claims: only finishes this process can decide on what it last saw
 * go in a batch, and two finishes that count down the same dependent never
 * share one (a transaction may write a key once); a batch that did not
 * commit, or whose outcome is unknown, sends each finish on alone, which then
 * reads afresh and recognises its own result if the batch recorded it.
 */
export class FinishBatcher {
  private readonly batcher: Batcher<Call, Answer>;

  constructor(private readonly ctx: EtcdContext) {
    this.batcher = new Batcher(
      {
        maxCalls: 32,
        // etcd caps compares and ops per transaction alike (128).
        maxWeight: INLINE_READS,
        // A dependent counted down inline costs its ops and a compare, plus the node's own.
        weight: (c) =>
          FINISH_FIXED_OPS +
          (OPS_PER_DEPENDENT + 1) *
            Math.min(
              this.ctx.seen.node(c.req.runId, c.req.node)?.rec.down.length ?? INLINE_DEPENDENTS,
              INLINE_DEPENDENTS,
            ),
        key: (c) => this.writes(c.req),
      },
      (calls) => this.send(calls),
    );
  }

  /**
   * What a finish writes, by node: its own node and the dependents it counts
   * down inline. Finishes of one run share a batch when these are disjoint (a
   * transaction may write a key once), so a wide run's finishes batch as well
   * as many small runs' do.
   */
  private writes(req: FinishRequest): string[] {
    const at = (node: string) => `${req.runId}\u0000${node}`;
    const down = this.ctx.seen.node(req.runId, req.node)?.rec.down ?? [];
    return [at(req.node), ...(down.length <= INLINE_DEPENDENTS ? down.map(at) : [])];
  }

  async finish(req: FinishRequest): Promise<void> {
    checkConclusion(req.conclusion);
    checkMetadata(req.metadata);
    checkStartedAt(req.startedAt);
    const seen = seenForFinish(this.ctx, req, req.conclusion === 'SUCCESS');
    // An attempt that streamed output is recorded alone: its chunks are read first.
    if (!seen || seen.node?.rec.o) return finishNode(this.ctx, req, { fresh: true });
    const answer = await this.batcher.submit({ req, now: this.ctx.clock.now(), output: finishOutput(req) });
    // A batch that failed its compares may still have committed: the etcd client repeats a call on its own.
    if ('alone' in answer) return finishNode(this.ctx, req, { fresh: true, inDoubt: true });
    await followUp(this.ctx, req, answer.after);
  }

  /**
   * Plans are made here, as the batch leaves, not when the calls arrived: the
   * batch before may have changed what they would compare (a dependent two
   * finishes of a run both count down).
   */
  private async send(calls: Call[]): Promise<Answer[]> {
    const plans = calls.map((c) => {
      const seen = seenForFinish(this.ctx, c.req, c.req.conclusion === 'SUCCESS');
      const plan = seen && !seen.node?.rec.o && planFinish(this.ctx, c.req, seen, c.now, c.output);
      return plan && plan !== 'stale' ? plan : undefined;
    });
    const sent = plans.filter((p): p is FinishPlan => p !== undefined);
    // Seal probes (seal.ts) read after every write of the batch; none names a node the batch finishes.
    const busy = new Map<string, Set<string>>();
    calls.forEach((c, i) => {
      if (!plans[i]) return;
      const nodes = busy.get(c.req.runId) ?? new Set<string>();
      busy.set(c.req.runId, nodes.add(c.req.node));
    });
    const probes = calls.map((c, i) =>
      plans[i]?.after.sealCheck ? sealProbe(this.ctx, c.req.runId, busy.get(c.req.runId)!) : undefined,
    );
    const ops = sent.flatMap((p) => p.ops);
    let res: Awaited<ReturnType<EtcdContext['store']['txn']>> | undefined;
    if (sent.length > 0)
      try {
        res = await this.ctx.store.txn({
          compare: sent.flatMap((p) => p.compare),
          success: [...ops, ...probes.flatMap((p) => (p ? [p.op] : []))],
        });
      } catch {
        res = undefined; // each call learns its own fate alone
      }
    let at = ops.length;
    return calls.map((c, i) => {
      const plan = plans[i];
      if (!plan || !res?.succeeded) return { alone: true };
      const probe = probes[i];
      const open = probe !== undefined && witnessOpen(this.ctx, c.req.runId, probe, res.responses[at++]);
      return { after: withProbe(committed(this.ctx, c.req, plan, res.header.revision), open) };
    });
  }
}
