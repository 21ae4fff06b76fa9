import type { IKeyValue } from 'etcd3';
import type { EtcdContext } from './context.js';
import { countedPage, ETCD_MAX_TXN_OPS, RETENTION_PAGE, RETENTION_PAGE_MAX } from './limits.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, type RunRecord } from './records.js';
import { maybeSeal } from './seal.js';
import { COUNTER_SHARDS } from './start.js';
import { del, delPrefix, delRange, get, modIs, put } from './store.js';

/** Commit markers the deleting transaction carries itself: etcd's op budget less its own (at most eleven) ops. */
const MARKERS_IN_DELETE = ETCD_MAX_TXN_OPS - 11;

/**
 * Retention: deletes completed runs created before `ms` (oldest first, by
 * run key, which sorts by creation time) with every key they own, one
 * optimistic transaction per run that compares the run key (still completed)
 * and moves a node-total counter shard. etcd keeps old revisions until
 * compacted: see docs/etcd.md for auto-compaction. A run whose delete keeps
 * losing races ends the sweep with UnavailableError (optimistic.ts); the next
 * sweep takes it again.
 */
export async function deleteCompletedRunsBefore(
  ctx: EtcdContext,
  floorId: string,
  ms: number,
): Promise<number> {
  const { keys, store } = ctx;
  let from = keys.runs();
  const end = keys.run(floorId);
  let deleted = 0;
  let limit = RETENTION_PAGE;
  // A scan of run keys in pages, not a read-compare-retry loop: each run's delete is its own transaction.
  // A page is a share of what is left (countedPage): etcd counts the rest of the range at every read.
  for (;;) {
    const page = await store.retrying('delete completed runs', () =>
      store.range({ key: from, range_end: end, limit }),
    );
    limit = countedPage(Number(page.count) - page.kvs.length, RETENTION_PAGE, RETENTION_PAGE_MAX);
    for (const kv of page.kvs)
      if (decodeJson<RunRecord>(kv.value).createdAt < ms && (await deleteRun(ctx, kv))) deleted++;
    if (!page.more || page.kvs.length === 0) return deleted;
    from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

/**
 * Deletes the run `listed` holds if it is (still) completed; false when it is
 * not (gone, open, or being retried: a retry clears the conclusion first).
 */
async function deleteRun(ctx: EtcdContext, listed: IKeyValue): Promise<boolean> {
  const { keys, store } = ctx;
  const id = decodeJson<RunRecord>(listed.value).id;
  const shard = Math.floor(Math.random() * COUNTER_SHARDS);
  const counterKey = keys.counter(shard);
  const runKey = keys.run(id);
  let markersDeleted = false;
  return optimistic(
    store,
    `delete of run ${id} (counter shard ${shard})`,
    async (lost): Promise<Decision<boolean>> => {
      // A lost round's failure ops read the run and the shard again: no read of its own.
      let kv: IKeyValue | undefined = listed;
      let ckv: IKeyValue | undefined;
      if (lost) [kv, ckv] = lost.responses.map((r) => r.response_range.kvs[0]);
      else
        ckv = (await store.retrying('delete completed runs', () => store.range({ key: counterKey }))).kvs[0];
      if (!kv) return { done: false }; // deleted by another sweep
      let rec = decodeJson<RunRecord>(kv.value);
      if (!rec.conclusion) {
        // Completed but never sealed (its sealer died), or still open: seal decides, then read again.
        await maybeSeal(ctx, id);
        kv = (await store.retrying('delete completed runs', () => store.range({ key: runKey }))).kvs[0];
        if (!kv) return { done: false };
        rec = decodeJson<RunRecord>(kv.value);
        if (!rec.conclusion) return { done: false };
      }
      const markers = (rec.rts ?? []).map((rt) => del(keys.committed(rt, rec.id)));
      // A run of more runtimes than one transaction can hold: its commit markers (wake-ups, read by nobody
      // once written) go first, outside the transaction.
      const inline = markers.length <= MARKERS_IN_DELETE;
      if (!inline && !markersDeleted) {
        await store.retrying('delete completed runs', () => store.writeAll(markers));
        markersDeleted = true;
      }
      const value = ckv ? Number(ckv.value.toString()) : 0;
      return {
        compare: [modIs(runKey, kv.mod_revision), modIs(counterKey, ckv ? ckv.mod_revision : 0)],
        success: [
          del(runKey),
          del(keys.runIndexKey(rec.id)),
          delPrefix(keys.nodes(rec.id)),
          delPrefix(keys.statics(rec.id)),
          delPrefix(keys.attempts(rec.id)),
          delPrefix(keys.outputs(rec.id)),
          delRange(keys.failedRange(rec.id)),
          del(keys.meta(rec.id)),
          ...(rec.q !== undefined ? [del(keys.request(rec.q))] : []),
          delPrefix(keys.work(rec.id)),
          ...(inline ? markers : []),
          // Shards may go below zero individually; only their sum is meaningful.
          put(counterKey, Buffer.from(String(value - rec.n))),
        ],
        failure: [get(runKey), get(counterKey)],
        result: true,
      };
    },
  );
}
