import type { IRequestOp } from 'etcd3';
import type { EtcdContext } from './context.js';
import type { NodeRecord } from './records.js';
import { del } from './store.js';

/** Completing an open node on etcd (a cascade, a trigger that did not hold, a cancel): its index keys go, its state says COMPLETED. */

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
