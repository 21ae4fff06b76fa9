import { completeCancel } from './cancel.js';
import type { DynamoContext } from './context.js';
import { WORK_PK } from './items.js';
import type { Leases } from './leases.js';
import { finishRetry } from './resume.js';
import { drainSettles, type SettleWork } from './settle.js';
import { finishRoots } from './start.js';
import { sweepTimers } from './timing.js';

/**
 * What a process does on its timer: observe leases (rule 3), delete or prune
 * stale claim records (claim-records.ts), and finish work
 * items left by processes that died mid-way (settle cursors, cancels,
 * marked retries, big starts' roots). Every
 * step is conditioned, so two processes sweeping the same item do it once.
 * Items younger than `graceMs` are left to their own process. Then the
 * timers due (retry delays, node timeouts, run deadlines: timing.ts).
 */
export async function sweep(
  ctx: DynamoContext,
  leases: Leases,
  seen: Map<string, number>,
  graceMs: number,
): Promise<void> {
  const live = await leases.observe();
  await ctx.claimRecords.flush();
  await ctx.claimRecords.prune(live);
  const now = performance.now();
  const items = await ctx.db.partition(WORK_PK);
  const present = new Set<string>();
  for (const item of items) {
    const key = `${item.sk!.S}#${item.v!.N}`;
    present.add(key);
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, now);
      continue;
    }
    if (now - first < graceMs) continue;
    const w = JSON.parse(item.d!.S!) as { kind: string; run: string } & SettleWork;
    if (w.kind === 'settle')
      await drainSettles(ctx, [
        { run: w.run, node: w.node, outcome: w.outcome, cursor: w.cursor, input: w.input },
      ]);
    else if (w.kind === 'cancel') await completeCancel(ctx, w.run);
    else if (w.kind === 'retry') await finishRetry(ctx, w.run);
    else if (w.kind === 'roots') await finishRoots(ctx, w.run);
  }
  for (const k of seen.keys()) if (!present.has(k)) seen.delete(k);
  await sweepTimers(ctx);
}
