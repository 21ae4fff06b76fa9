import { Delta, type DynamoContext } from './context.js';
import { type Item, S } from './db.js';
import { decodeRun, headerKey, listSortKey, RUNS_LIST_PK, requestKey, runPk } from './items.js';
import { RUNS_INDEX } from './table.js';

/**
 * Deletes completed runs created before `ms`: found through the `runs` index
 * (a key range, not a scan); each run's header goes first in a transaction
 * conditioned on its version and still completed (the run vanishes at once,
 * counters with it), then the rest of its partition in batches.
 */
export async function deleteCompletedRunsBefore(ctx: DynamoContext, ms: number): Promise<number> {
  const older = await ctx.db.queryAll({
    IndexName: RUNS_INDEX,
    KeyConditionExpression: 'lpk = :p AND lsk < :hi',
    ExpressionAttributeValues: {
      ':p': S(RUNS_LIST_PK),
      ':hi': S(listSortKey(Math.max(0, Math.floor(ms)), '')),
    },
  });
  let deleted = 0;
  for (const entry of older) {
    const runId = entry.pk!.S!.slice(4);
    const item = await ctx.db.get(headerKey(runId));
    if (!item) continue;
    const header = decodeRun(item);
    if (!header.d.conclusion || header.d.resuming) continue;
    const delta = new Delta();
    delta.runs = -1;
    for (const [s, n] of Object.entries(header.d.counts)) delta.nodes[s as keyof typeof delta.nodes] -= n;
    const tx = ctx.db.tx();
    tx.del(headerKey(runId), header.v);
    const requestId = header.d.identity?.requestId;
    if (requestId !== undefined) tx.del(requestKey(requestId));
    delta.addTo(tx);
    if (!(await ctx.db.commit(tx))) continue;
    deleted++;
    const rest: Item[] = await ctx.db.partition(runPk(runId), '', { ProjectionExpression: 'pk, sk' });
    await ctx.db.writeAll(
      [],
      rest.map((i) => ({ pk: i.pk!.S!, sk: i.sk!.S! })),
    );
  }
  return deleted;
}
