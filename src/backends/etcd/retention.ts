import type { EtcdContext } from './context.js';
import { ETCD_MAX_TXN_OPS } from './limits.js';
import { decodeJson, type RunRecord } from './records.js';
import { maybeSeal } from './seal.js';
import { COUNTER_SHARDS } from './start.js';
import { del, delPrefix, delRange, get, modIs, put } from './store.js';

const PAGE = 200;
/** Commit markers the deleting transaction carries itself: etcd's op budget less its own (at most eleven) ops. */
const MARKERS_IN_DELETE = ETCD_MAX_TXN_OPS - 11;

/**
 * Retention: deletes completed runs created before `ms` (oldest first, by
 * run key, which sorts by creation time) with every key they own, one
 * transaction per run that compares the run key (still completed) and moves
 * a node-total counter shard. etcd keeps old revisions until compacted: see
 * docs/etcd.md for auto-compaction.
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
  for (;;) {
    const page = await store.retrying('delete completed runs', () =>
      store.range({ key: from, range_end: end, limit: PAGE }),
    );
    for (const kv of page.kvs) {
      let rec = decodeJson<RunRecord>(kv.value);
      let rev = kv.mod_revision;
      if (rec.createdAt >= ms) continue;
      if (!rec.conclusion) {
        // Completed but never sealed (its sealer died), or still open: seal decides.
        await maybeSeal(ctx, rec.id);
        const again = await store.range({ key: kv.key });
        if (!again.kvs[0]) continue;
        rec = decodeJson<RunRecord>(again.kvs[0].value);
        rev = again.kvs[0].mod_revision;
        if (!rec.conclusion) continue;
      }
      if (await deleteRun(ctx, rec, rev)) deleted++;
    }
    if (!page.more || page.kvs.length === 0) return deleted;
    from = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

async function deleteRun(ctx: EtcdContext, rec: RunRecord, rev: string): Promise<boolean> {
  const { keys, store } = ctx;
  const shard = Math.floor(Math.random() * COUNTER_SHARDS);
  const counterKey = keys.counter(shard);
  const markers = (rec.rts ?? []).map((rt) => del(keys.committed(rt, rec.id)));
  // A run of more runtimes than one transaction can hold: its commit markers (wake-ups, read by nobody
  // once written) go first, outside the transaction.
  const inline = markers.length <= MARKERS_IN_DELETE;
  if (!inline) await store.retrying('delete completed runs', () => store.writeAll(markers));
  return store.retrying('delete completed runs', async () => {
    for (;;) {
      const c = await store.range({ key: counterKey });
      const ckv = c.kvs[0];
      const value = ckv ? Number(ckv.value.toString()) : 0;
      const res = await store.txn({
        compare: [modIs(keys.run(rec.id), rev), modIs(counterKey, ckv ? ckv.mod_revision : 0)],
        success: [
          del(keys.run(rec.id)),
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
        failure: [get(keys.run(rec.id))],
      });
      if (res.succeeded) return true;
      const now = res.responses[0]!.response_range.kvs[0];
      if (!now || now.mod_revision !== rev) return false; // gone or changed: leave it
    }
  });
}
