import type { ICompare, IRequestOp } from 'etcd3';
import { cascade } from './cascade.js';
import type { EtcdContext } from './context.js';
import { FAN_OUT_CHUNK } from './limits.js';
import { readNodes, statics } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, encodeJson, type RunRecord } from './records.js';
import { del, get, modIs, put } from './store.js';
import { settle } from './triggers.js';
import { type CascadeItem, type FanOutItem, fanOutItem, workItemKey } from './work-items.js';

/**
 * A success's dependents when there are more of them than one transaction
 * may hold (etcd allows 128 ops per transaction). The finishing transaction
 * records the attempt and a work item k/<run>/d:<node> = {at, done}; then the
 * dependents' pending-upstream counters are counted down (and their
 * triggers judged, triggers.ts) in chunks, each
 * chunk one transaction that compares the dependents, the run (so a cancel in
 * between stops it: cancel lists open nodes by status, and a WAITING node
 * turning READY behind its back could escape it) and the work item, and
 * advances the item's cursor `done` in the same transaction. A decrement is
 * not idempotent; the cursor moving with it is what lets any process resume
 * the work (the sweeper, if this one dies) without counting a dependent twice.
 */

/**
 * Works the item k/<run>/d:<node> off to its end; safe to run in several
 * processes at once. Each chunk is one optimistic transaction (optimistic.ts):
 * a lost race (another resumer, a dependent's other upstream) reads the item
 * and the chunk again. Giving up after the helper's bound throws
 * UnavailableError; the item stays, and the sweeper resumes it from its cursor.
 */
export async function fanOut(ctx: EtcdContext, runId: string, node: string): Promise<void> {
  const { keys, store } = ctx;
  const itemKey = workItemKey(keys, runId, fanOutItem(node));
  const topo = (await store.retrying('fan-out', () => statics(ctx, runId, [node]))).get(node);
  const down = topo?.down ?? [];
  const what = `fan-out of ${runId}/${node}`;
  type Chunk = { ended: boolean; unreached: [string, CascadeItem][] };
  for (let ended = false; !ended; ) {
    const chunk = await optimistic(store, what, async (): Promise<Decision<Chunk>> => {
      const r = await store.retrying('fan-out', () =>
        store.txn({ success: [get(itemKey), get(keys.run(runId))] }),
      );
      const itemKv = r.responses[0]!.response_range.kvs[0];
      if (!itemKv) return { done: { ended: true, unreached: [] } }; // finished (here or elsewhere)
      const runKv = r.responses[1]!.response_range.kvs[0];
      const run = runKv ? decodeJson<RunRecord>(runKv.value) : undefined;
      const item = decodeJson<FanOutItem>(itemKv.value);
      if (!runKv || !run || run.cancelled || run.conclusion || item.done >= down.length)
        // Nothing left to count down (a cancel completes the dependents itself).
        return {
          compare: [modIs(itemKey, itemKv.mod_revision)],
          success: [del(itemKey)],
          result: { ended: true, unreached: [] },
        };
      const batch = down.slice(item.done, item.done + FAN_OUT_CHUNK);
      const nodes = await store.retrying('fan-out', () => readNodes(ctx, runId, batch));
      const compare: ICompare[] = [
        modIs(itemKey, itemKv.mod_revision),
        modIs(keys.run(runId), runKv.mod_revision),
      ];
      const ops: IRequestOp[] = [];
      const unreached: [string, CascadeItem][] = [];
      const now = ctx.clock.now();
      for (const n of nodes) {
        // Completed already (unreached via a failed branch): nothing to count down.
        const settled = n && settle(ctx, runId, n.rec, node, 'succeeded', now);
        if (!settled) continue;
        compare.push(modIs(keys.node(runId, n.name), n.rev));
        ops.push(...settled.ops);
        if (settled.unreached) unreached.push([n.name, settled.unreached]);
      }
      const done = item.done + batch.length;
      ops.push(
        done >= down.length ? del(itemKey) : put(itemKey, encodeJson({ at: now, done } satisfies FanOutItem)),
      );
      return { compare, success: ops, result: { ended: done >= down.length, unreached } };
    });
    for (const [name, item] of chunk.unreached) await cascade(ctx, runId, name, item);
    // A committed delete of the item (compared on its revision) ends the work: no confirming read.
    ended = chunk.ended;
  }
}
