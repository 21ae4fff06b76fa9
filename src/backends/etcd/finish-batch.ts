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
} from './finish.js';
import { INLINE_READS } from './limits.js';
import { seenForFinish } from './node-read.js';

interface Call {
  req: FinishRequest;
  now: number;
  output: Buffer;
}

type Answer = { after: FinishAfter } | { alone: true };

/**
 * This process's concurrent finishes as one etcd transaction, as ClaimBatcher
 * does for claims: only finishes this process can decide on what it last saw
 * go in a batch, one per run (two finishes of a run may count down the same
 * dependent, and a transaction may write a key once); a batch that did not
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
        // Up to 5 ops per dependent counted down inline (fanout.ts), plus the node's own.
        weight: (c) =>
          8 + 5 * Math.min(this.ctx.seen.node(c.req.runId, c.req.node)?.rec.down.length ?? 20, 20),
        key: (c) => c.req.runId,
      },
      (calls) => this.send(calls),
    );
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
    let res: Awaited<ReturnType<EtcdContext['store']['txn']>> | undefined;
    if (sent.length > 0)
      try {
        res = await this.ctx.store.txn({
          compare: sent.flatMap((p) => p.compare),
          success: sent.flatMap((p) => p.ops),
        });
      } catch {
        res = undefined; // each call learns its own fate alone
      }
    return calls.map((c, i) => {
      const plan = plans[i];
      if (!plan || !res?.succeeded) return { alone: true };
      return { after: committed(this.ctx, c.req, plan, res.header.revision) };
    });
  }
}
