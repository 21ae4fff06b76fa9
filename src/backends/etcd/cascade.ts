import type { ICompare, IRequestOp } from 'etcd3';
import { unreached } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { SETTLE_BATCH } from './limits.js';
import { encodeState, readNodes } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import type { NodeRecord } from './records.js';
import { del, modIs, put } from './store.js';
import { cascadeItem, workItemKey } from './work-items.js';

/**
 * Rule 5's cascade on etcd: the nodes downstream of a final failure complete
 * with no attempt (unreached), in bounded transactions with compares, safe to
 * repeat and to run in several processes at once. The finish that failed
 * records a work item; this removes it once the cascade is done.
 */

/** Completes (no attempt) every node downstream of a failed one, breadth first, in bounded batches. */
export async function cascade(
  ctx: EtcdContext,
  runId: string,
  failed: string,
  from: string[],
): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const seen = new Set(from);
  const frontier = [...from];
  while (frontier.length > 0) {
    const batch = frontier.splice(0, SETTLE_BATCH);
    const done = await optimistic(store, 'cascade', async (): Promise<Decision<NodeRecord[]>> => {
      const nodes = await store.retrying('cascade', () => readNodes(ctx, runId, batch));
      const compare: ICompare[] = [];
      const ops: IRequestOp[] = [];
      const done: NodeRecord[] = [];
      for (const n of nodes) {
        // A completed node's own downstream was completed when it was; a running one cannot be downstream of a failure.
        if (!n || !unreached(n.rec.s)) continue;
        compare.push(modIs(keys.node(runId, n.name), n.rev));
        ops.push(
          ...closeOps(ctx, runId, n.rec),
          put(keys.node(runId, n.name), encodeState(completed(n.rec, now))),
        );
        done.push(n.rec);
      }
      if (ops.length === 0) return { done: [] };
      return { compare, success: ops, result: done };
    });
    for (const rec of done)
      for (const d of rec.down)
        if (!seen.has(d)) {
          seen.add(d);
          frontier.push(d);
        }
  }
  await store.retrying('cascade', () =>
    store.txn({ success: [del(workItemKey(keys, runId, cascadeItem(failed)))] }),
  );
}

/** Index keys an open node holds in its current status, to delete as it completes. */
export function closeOps(ctx: EtcdContext, runId: string, rec: NodeRecord): IRequestOp[] {
  const { keys } = ctx;
  const name = rec.spec.name;
  const rt = rec.spec.runtime;
  if (rec.s === 'WAITING') return [del(keys.openNode('W', runId, name))];
  if (rec.s === 'READY') return [del(keys.openNode('R', runId, name)), del(keys.ready(rt, runId, name))];
  if (rec.s === 'RUNNING')
    return [
      del(keys.openNode('U', runId, name)),
      del(keys.running(rt, runId, name)),
      del(keys.claim(rt, runId, name)),
    ];
  return [];
}

export function completed(rec: NodeRecord, now: number): NodeRecord {
  return { ...rec, s: 'COMPLETED', ft: now, c: undefined };
}
