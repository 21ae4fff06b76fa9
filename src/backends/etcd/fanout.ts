import type { ICompare, IRequestOp } from 'etcd3';
import { cascade } from './cascade.js';
import type { EtcdContext } from './context.js';
import { FAN_OUT_CHUNK } from './limits.js';
import { readNodes, statics } from './nodes.js';
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

/** Works the item k/<run>/d:<node> off to its end; safe to run in several processes at once. */
export async function fanOut(ctx: EtcdContext, runId: string, node: string): Promise<void> {
  const { keys, store } = ctx;
  const itemKey = workItemKey(keys, runId, fanOutItem(node));
  const topo = (await store.retrying('fan-out', () => statics(ctx, runId, [node]))).get(node);
  for (;;) {
    const r = await store.retrying('fan-out', () =>
      store.txn({ success: [get(itemKey), get(keys.run(runId))] }),
    );
    const itemKv = r.responses[0]!.response_range.kvs[0];
    if (!itemKv) return; // finished (here or elsewhere)
    const runKv = r.responses[1]!.response_range.kvs[0];
    const run = runKv ? decodeJson<RunRecord>(runKv.value) : undefined;
    const item = decodeJson<FanOutItem>(itemKv.value);
    const down = topo?.down ?? [];
    if (!run || run.cancelled || run.conclusion || item.done >= down.length) {
      // Nothing left to count down (a cancel completes the dependents itself).
      await store.retrying('fan-out', () =>
        store.txn({ compare: [modIs(itemKey, itemKv.mod_revision)], success: [del(itemKey)] }),
      );
      continue;
    }
    const batch = down.slice(item.done, item.done + FAN_OUT_CHUNK);
    const nodes = await store.retrying('fan-out', () => readNodes(ctx, runId, batch));
    const compare: ICompare[] = [
      modIs(itemKey, itemKv.mod_revision),
      modIs(keys.run(runId), runKv!.mod_revision),
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
      done >= down.length
        ? del(itemKey)
        : put(itemKey, encodeJson({ at: ctx.clock.now(), done } satisfies FanOutItem)),
    );
    // A lost race (another resumer, a dependent's other upstream) just reads again.
    const res = await store.retrying('fan-out', () => store.txn({ compare, success: ops }));
    if (res.succeeded) for (const [name, item] of unreached) await cascade(ctx, runId, name, item);
  }
}
