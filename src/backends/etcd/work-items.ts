import type { IRequestOp } from 'etcd3';
import { nodeTimeoutMs, type RetriedNode } from '../../model/index.js';
import type { Keys } from './keys.js';
import type { NodeRecord } from './records.js';
import { del } from './store.js';

/**
 * Durable follow-up work, one key k/<run>/<name> per item, written in the
 * transaction that makes the work necessary and deleted when it is done, so
 * the sweeper of any process finishes what a dead one left (sweep.ts). The
 * names on disk are 'cancel', 'retry', 'deadline', 'f:<node>', 'd:<node>', 'r:<node>' and 't:<node>'; nothing outside
 * this module spells them. The timed ones ('deadline', 'r:', 't:', see
 * TimedItem) are keyed d/<due>/<run>/<name> instead, in due order (timing.ts).
 */
export type WorkItem =
  /** Rule 6: the run is marked cancelled; its open nodes still to complete. */
  | { kind: 'cancel' }
  /** Rules 5 and 14: `node` completed without success; its dependents' triggers still to judge it. */
  | { kind: 'cascade'; node: string }
  /** Rule 4: `node` succeeded; its dependents still to count down, in chunks (fanout.ts). */
  | { kind: 'fan-out'; node: string }
  /** Rule 15: the run is marked resuming; the plan's nodes still to put back (resume.ts). */
  | { kind: 'retry' }
  /** Rule 5: `node` is READY but waits out a retry delay; announced (its queue key written) when due (timing.ts). */
  | { kind: 'retry-due'; node: string }
  /** Rule 11: `node` was claimed with a timeout; the store ends the attempt if it is still running when due (timing.ts). */
  | { kind: 'timeout'; node: string }
  /** Rule 13: the run has a deadline; the sweeper cancels it TIMED_OUT if it is still open when due (timing.ts). */
  | { kind: 'deadline' };

/** What each kind of item stores: when it was written, and the kind's own progress. */
export interface CancelItem {
  at: number;
}
export interface CascadeItem {
  at: number;
  /** Where the cascade starts: the node's direct dependents. */
  from: string[];
  /** How the node completed: 'f' failed for good (absent: written before triggers), 'n' unreached. */
  o?: 'f' | 'n';
}
export interface RetryItem {
  at: number;
  /** The nodes the retry named (none: every node that did not succeed); the plan is made again from these. */
  named?: string[];
  /** An older store's item: the retry's plan (model/resume.ts), as applied to each node. */
  nodes?: RetriedNode[];
}
export interface FanOutItem {
  at: number;
  /** How many of the node's dependents (in N/ order) have been counted down. */
  done: number;
}

export interface RetryDueItem {
  at: number;
  /** When the node becomes claimable, ms. */
  due: number;
}

export interface TimeoutItem {
  at: number;
  /** When the attempt's timeout passes, ms. */
  due: number;
  /** The claim it was written for: a later attempt's claim is not this item's business. */
  claim: string;
}

export interface DeadlineItem {
  at: number;
  /** When the run's deadline passes, ms. */
  due: number;
}

export const cancelItem: WorkItem = { kind: 'cancel' };
export const retryItem: WorkItem = { kind: 'retry' };
export const deadlineItem: TimedItem = { kind: 'deadline' };
export const cascadeItem = (node: string): WorkItem => ({ kind: 'cascade', node });
export const fanOutItem = (node: string): WorkItem => ({ kind: 'fan-out', node });
export const retryDueItem = (node: string): TimedItem => ({ kind: 'retry-due', node });
export const timeoutItem = (node: string): TimedItem => ({ kind: 'timeout', node });

/** The item's name under k/<run>/. */
export function workItemName(item: WorkItem): string {
  if (item.kind === 'cancel' || item.kind === 'retry' || item.kind === 'deadline') return item.kind;
  if (item.kind === 'retry-due') return `r:${item.node}`;
  if (item.kind === 'timeout') return `t:${item.node}`;
  return `${item.kind === 'cascade' ? 'f' : 'd'}:${item.node}`;
}

/** The item a name under k/<run>/ stands for; undefined for a name this version does not know. */
export function parseWorkItem(name: string): WorkItem | undefined {
  if (name === 'cancel') return cancelItem;
  if (name === 'retry') return retryItem;
  if (name === 'deadline') return deadlineItem;
  if (name.startsWith('f:')) return cascadeItem(name.slice(2));
  if (name.startsWith('d:')) return fanOutItem(name.slice(2));
  if (name.startsWith('r:')) return retryDueItem(name.slice(2));
  if (name.startsWith('t:')) return timeoutItem(name.slice(2));
  return undefined;
}

export function workItemKey(keys: Keys, runId: string, item: WorkItem): Buffer {
  return keys.workItem(runId, workItemName(item));
}

/** The items that fall due at a time of their own: kept under d/<due>/ (keys.ts), not k/<run>/. */
export type TimedItem = Extract<WorkItem, { kind: 'retry-due' | 'timeout' | 'deadline' }>;

export function isTimed(item: WorkItem): item is TimedItem {
  return item.kind === 'retry-due' || item.kind === 'timeout' || item.kind === 'deadline';
}

/**
 * A timed item's key: the due time is part of it, so whoever writes or
 * deletes the item knows it (the deadline is on the run record, a retry's
 * due time on the node's, a timeout is due its timeout after the claim that
 * wrote `st`). An item left behind (its run deleted, say) is dropped by the
 * sweep once due, as a stale one.
 */
export function timedItemKey(keys: Keys, runId: string, item: TimedItem, due: number): Buffer {
  return keys.timer(due, runId, workItemName(item));
}

/**
 * The key of the timeout item (rule 11) the claim that started `rec`'s
 * attempt wrote: due its timeout after that claim (`st`); none without one.
 */
export function timeoutItemKey(
  keys: Keys,
  runId: string,
  node: string,
  rec: Pick<NodeRecord, 'st' | 'spec'>,
): Buffer | undefined {
  const timeoutMs = nodeTimeoutMs(rec.spec);
  if (timeoutMs === undefined || rec.st === undefined) return undefined;
  return timedItemKey(keys, runId, timeoutItem(node), rec.st + timeoutMs);
}

/** Deletes the timeout item of the attempt that ends (a finish, a release), if its node has a timeout. */
export function dropTimeout(
  keys: Keys,
  runId: string,
  node: string,
  rec: Pick<NodeRecord, 'st' | 'spec'>,
): IRequestOp[] {
  const key = timeoutItemKey(keys, runId, node, rec);
  return key ? [del(key)] : [];
}
