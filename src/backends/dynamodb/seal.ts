import type { RunConclusion } from '../../model/index.js';
import type { DynamoContext, LocalEvent } from './context.js';
import { N } from './db.js';
import { decodeRun, headerKey, sealIfDone, writeHeader } from './items.js';

/**
 * Rule 7's completion, apart from the transitions (but for a finish that sees
 * its own commit complete the run: addToHeader's `seal`): after a transition that
 * completed nodes commits, its process reads the header and, when every node
 * is completed, writes the conclusion and finishedAt conditioned on the
 * version and on the completed count still being the total (so a run is
 * sealed once, exactly when its last node completed, whoever gets there).
 */
export async function sealRun(ctx: DynamoContext, runId: string): Promise<void> {
  for (;;) {
    const item = await ctx.db.get(headerKey(runId));
    if (!item) return;
    const h = decodeRun(item);
    if (h.d.conclusion || h.d.resuming || h.d.counts.COMPLETED !== h.d.total) return;
    const d = structuredClone(h.d);
    sealIfDone(d, ctx.clock.now());
    const tx = ctx.db.tx();
    writeHeader(tx, h, d, ' AND cC = :total');
    const update = tx.items[0]!.Update!;
    update.ExpressionAttributeValues = { ...update.ExpressionAttributeValues, ':total': N(h.d.total) };
    if (await ctx.db.commit(tx)) {
      emitSealed(ctx, runId, d.conclusion);
      return;
    }
  }
}

/** After a commit that sealed the run (here, or in its last finish: addToHeader's `seal`). */
export function emitSealed(ctx: DynamoContext, runId: string, conclusion: RunConclusion | undefined): void {
  if (conclusion) ctx.bus.emit('local', { kind: 'sealed', runId, conclusion } satisfies LocalEvent);
  ctx.bus.emit('run', runId);
}
