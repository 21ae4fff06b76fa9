import {
  checkListLimit,
  checkRunFilter,
  checkRunId,
  decodeCursor,
  emptyNodeCounts,
  encodeCursor,
  filtering,
  type Run,
  type RunSummary,
  runMatches,
  type Stats,
} from '../../model/index.js';
import { type ClaimRef, type ListRunsQuery, NotFoundError, type RunPage } from '../../protocol/index.js';
import type { DynamoContext } from './context.js';
import { type Item, mk, S } from './db.js';
import {
  decodeNode,
  decodeRun,
  headerKey,
  listSortKey,
  nodeKey,
  RUNS_LIST_PK,
  type RunItem,
  runFromItems,
  runPk,
  STATS_PK,
  summaryOf,
} from './items.js';
import { LIST_SCAN_BUDGET } from './limits.js';
import { sealRun } from './seal.js';
import { RUNS_INDEX } from './table.js';

/** Inspect: the run's partition in one Query (paged by 1 MB), consistent. */
export async function inspectRun(ctx: DynamoContext, runId: string): Promise<Run> {
  return (await inspectWithItems(ctx, runId)).run;
}

/** The run, and the items it was made from (a watch's snapshot: the node versions it shows). */
export async function inspectWithItems(
  ctx: DynamoContext,
  runId: string,
): Promise<{ run: Run; items: Item[] }> {
  checkRunId(runId);
  // With the WAITING nodes not yet written, as the start planned them (waiting.ts).
  const items = ctx.waiting.complete(runId, await ctx.db.partition(runPk(runId)));
  const header = items.find((i) => i.sk!.S === '#');
  if (!header) throw new NotFoundError('run', runId);
  const h = decodeRun(header);
  // Every node completed but no seal: the process that completed the last one died before sealing. Seal it now.
  if (!h.d.conclusion && !h.d.resuming && h.d.counts.COMPLETED === h.d.total) {
    await sealRun(ctx, runId);
    const sealed = await ctx.db.get(headerKey(runId));
    if (sealed) return { run: runFromItems(decodeRun(sealed), items), items };
  }
  return { run: runFromItems(h, items), items };
}

/**
 * Newest first from the sparse `runs` index (run headers only, sorted by
 * created-at and id): the window and the cursor are key conditions, so a page
 * reads only its runs.
 */
export async function listRuns(ctx: DynamoContext, query: ListRunsQuery): Promise<RunPage> {
  const limit = checkListLimit(query.limit);
  checkRunFilter(query);
  const filtered = filtering(query);
  const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
  let upper = query.until !== undefined ? listSortKey(query.until, '') : '~';
  if (cursor) {
    const c = listSortKey(cursor.createdAtMs, cursor.runId);
    if (c < upper) upper = c;
  }
  const lower = query.since !== undefined ? listSortKey(query.since, '') : '0';
  const runs: RunSummary[] = [];
  // The last run looked at: the next page starts below it, matched or not.
  let last: RunItem | undefined;
  let scanned = 0;
  let more = false;
  let start: Item | undefined;
  for (;;) {
    const r = await ctx.db.query({
      IndexName: RUNS_INDEX,
      KeyConditionExpression: 'lpk = :p AND lsk BETWEEN :lo AND :hi',
      ExpressionAttributeValues: { ':p': S(RUNS_LIST_PK), ':lo': S(lower), ':hi': S(upper) },
      ScanIndexForward: false,
      Limit: filtered ? 100 : limit + 2 - runs.length,
      ExclusiveStartKey: start,
    });
    for (const item of r.Items ?? []) {
      if (item.lsk!.S === upper) continue; // BETWEEN is inclusive; the upper bound is not
      // A filtered page looks at LIST_SCAN_BUDGET runs at most: its cost stays bounded however rare the matches.
      if (runs.length === limit || (filtered && scanned === LIST_SCAN_BUDGET)) {
        more = true;
        break;
      }
      scanned++;
      last = decodeRun(item);
      const summary = summaryOf(last);
      if (!filtered || runMatches(summary, query)) runs.push(summary);
    }
    start = r.LastEvaluatedKey as Item | undefined;
    if (more || !start) break;
  }
  return {
    runs,
    nextCursor: more && last ? encodeCursor(last.d.createdAt, last.id) : undefined,
  };
}

/** Stats from the counter shards: one Query of a small partition, never a scan. */
export async function stats(ctx: DynamoContext): Promise<Stats> {
  const shards = await ctx.db.partition(STATS_PK);
  const out: Stats = { runCount: 0, nodeCounts: emptyNodeCounts() };
  const n = (i: Item, k: string) => Number(i[k]?.N ?? 0);
  for (const s of shards) {
    out.runCount += n(s, 'runs');
    out.nodeCounts.WAITING += n(s, 'cW');
    out.nodeCounts.READY += n(s, 'cR');
    out.nodeCounts.RUNNING += n(s, 'cU');
    out.nodeCounts.COMPLETED += n(s, 'cC');
  }
  return out;
}

/** Which claims still hold their node: one consistent batch read. */
export async function claimsHeld(ctx: DynamoContext, claims: ClaimRef[]): Promise<boolean[]> {
  const read = await ctx.db.getMany(claims.map((c) => nodeKey(c.runId, c.node)));
  return claims.map((c) => {
    const item = read.get(mk(nodeKey(c.runId, c.node)));
    if (!item) return false;
    const n = decodeNode(item).d;
    return n.status === 'RUNNING' && n.claim?.id === c.claimId && !n.claim.orphaned;
  });
}

export { runPk };
