import type { IRequestOp } from 'etcd3';
import { triggerDecision, type UpstreamOutcome, type UpstreamTally } from '../../model/index.js';
import { closeOps, completed } from './close.js';
import type { EtcdContext } from './context.js';
import { encodeState } from './nodes.js';
import { encodeJson, type NodeRecord } from './records.js';
import { del, put } from './store.js';
import { type CascadeItem, cascadeItem, workItemKey } from './work-items.js';

/**
 * Rule 14 on etcd: a WAITING dependent counts in an upstream node that
 * completed, and its trigger decides. The success path (finish, fan-out) and
 * the cascade of nodes that completed without success share this one step.
 */

/** The dependent's upstream tally, from its counters. */
export function tallyOf(rec: NodeRecord): UpstreamTally {
  const total = rec.up.length;
  const succeeded = total - rec.p;
  const dn = Object.values(rec.dn ?? {});
  return { total, succeeded, completed: succeeded + dn.length, failed: dn.filter((o) => o === 'f').length };
}

/** A dependent judged: its new record, the ops that store it, and the cascade it starts when it went unreached. */
export interface Settled {
  next: NodeRecord;
  ops: IRequestOp[];
  /** It completed unreached: its own dependents are to judge it (a cascade work item is among `ops`). */
  unreached?: CascadeItem;
}

/**
 * `dep` after its upstream `upstream` completed with `outcome`; undefined
 * when that changes nothing (not WAITING, or this upstream already counted).
 * Ops: at most 4 (open keys, ready key, state, or a cascade item).
 */
export function settle(
  ctx: EtcdContext,
  runId: string,
  dep: NodeRecord,
  upstream: string,
  outcome: UpstreamOutcome,
  now: number,
  /** Record a cascade work item when it goes unreached (not inside a cascade, which walks on itself). */
  withItem = true,
): Settled | undefined {
  if (dep.s !== 'WAITING') return undefined;
  let next: NodeRecord;
  if (outcome === 'succeeded') next = { ...dep, p: dep.p - 1 };
  else if (dep.dn?.[upstream]) return undefined;
  else next = { ...dep, dn: { ...dep.dn, [upstream]: outcome === 'failed' ? 'f' : 'n' } };
  const { keys } = ctx;
  const name = dep.spec.name;
  const decision = triggerDecision(dep.spec.trigger, tallyOf(next));
  if (decision === 'WAIT') return { next, ops: [put(keys.node(runId, name), encodeState(next))] };
  if (decision === 'READY') {
    next = { ...next, s: 'READY' };
    return {
      next,
      ops: [
        del(keys.openNode('W', runId, name)),
        put(keys.openNode('R', runId, name), Buffer.from(next.spec.runtime)),
        put(keys.ready(next.spec.runtime, runId, name), Buffer.alloc(0)),
        put(keys.node(runId, name), encodeState(next)),
      ],
    };
  }
  next = completed(next, now);
  const ops = [...closeOps(ctx, runId, dep), put(keys.node(runId, name), encodeState(next))];
  if (dep.down.length === 0 || !withItem) return { next, ops };
  const item: CascadeItem = { at: now, from: dep.down, o: 'n' };
  ops.push(put(workItemKey(keys, runId, cascadeItem(name)), encodeJson(item)));
  return { next, ops, unreached: item };
}
