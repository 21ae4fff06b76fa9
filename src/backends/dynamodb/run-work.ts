import { cancelKey, completeCancel } from './cancel.js';
import type { DynamoContext } from './context.js';
import { WORK_PK } from './items.js';
import { drainSettles, type SettleWork } from './settle.js';

/**
 * Completes the work a run's earlier transitions left recorded (a cancel, or
 * a fan-out's settle item whose process died or has not finished), whatever
 * its age. A retry does this before it plans: replayed after it, a settle
 * would judge the retried dependents by the old outcome (completing them
 * unreached), and a cancel's end would delete the retried run's own settles.
 */
export async function settleRunWork(ctx: DynamoContext, runId: string): Promise<void> {
  if (await ctx.db.get(cancelKey(runId))) await completeCancel(ctx, runId);
  const items = await ctx.db.partition(WORK_PK, `settle#${runId}#`);
  if (items.length === 0) return;
  await drainSettles(
    ctx,
    items.map((i) => {
      const w = JSON.parse(i.d!.S!) as SettleWork;
      return { run: w.run, node: w.node, outcome: w.outcome, cursor: w.cursor, input: w.input };
    }),
  );
}
