import type { ICompare, IRequestOp } from 'etcd3';
import { countedDown as countDownRule } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { FAN_OUT_CHUNK } from './limits.js';
import { encodeState, readNodes, statics } from './nodes.js';
import { decodeJson, encodeJson, type NodeRecord, type RunRecord } from './records.js';
import { del, get, modIs, put } from './store.js';
import { type FanOutItem, fanOutItem, workItemKey } from './work-items.js';

/**
 * A success's dependents when there are more of them than one transaction
 * may hold (etcd allows 128 ops per transaction). The finishing transaction
 * records the attempt and a work item k/<run>/d:<node> = {at, done}; then the
 * dependents' pending-upstream counters are counted down in chunks, each
 * chunk one transaction that compares the dependents, the run (so a cancel in
 * between stops it: cancel lists open nodes by status, and a WAITING node
 * turning READY behind its back could escape it) and the work item, and
 * advances the item's cursor `done` in the same transaction. A decrement is
 * not idempotent; the cursor moving with it is what lets any process resume
 * the work (the sweeper, if this one dies) without counting a dependent twice.
 */

/** A dependent after one of its upstream nodes succeeded: one fewer to wait for, READY at zero. */
export function countedDown(dep: NodeRecord): NodeRecord {
  const next = countDownRule({ pending: dep.p, status: dep.s });
  return { ...dep, p: next.pending, s: next.status as NodeRecord['s'] };
}

/** The ops that make a dependent's counter one smaller, and READY when it reaches zero. */
export function countDown(ctx: EtcdContext, runId: string, dep: NodeRecord): IRequestOp[] {
  const { keys } = ctx;
  const d = dep.spec.name;
  const nd = countedDown(dep);
  const ops: IRequestOp[] = [];
  if (nd.s === 'READY' && dep.s === 'WAITING') {
    ops.push(
      del(keys.openNode('W', runId, d)),
      put(keys.openNode('R', runId, d), Buffer.from(nd.spec.runtime)),
      put(keys.ready(nd.spec.runtime, runId, d), Buffer.alloc(0)),
    );
  }
  ops.push(put(keys.node(runId, d), encodeState(nd)));
  return ops;
}

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
    for (const n of nodes) {
      // Completed already (unreached via a failed branch): nothing to count down.
      if (!n || n.rec.s === 'COMPLETED') continue;
      compare.push(modIs(keys.node(runId, n.name), n.rev));
      ops.push(...countDown(ctx, runId, n.rec));
    }
    const done = item.done + batch.length;
    ops.push(
      done >= down.length
        ? del(itemKey)
        : put(itemKey, encodeJson({ at: ctx.clock.now(), done } satisfies FanOutItem)),
    );
    // A lost race (another resumer, a dependent's other upstream) just reads again.
    await store.retrying('fan-out', () => store.txn({ compare, success: ops }));
  }
}
