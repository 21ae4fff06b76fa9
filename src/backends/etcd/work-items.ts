import type { Keys } from './keys.js';

/**
 * Durable follow-up work, one key k/<run>/<name> per item, written in the
 * transaction that makes the work necessary and deleted when it is done, so
 * the sweeper of any process finishes what a dead one left (sweep.ts). The
 * names on disk are 'cancel', 'deadline', 'f:<node>', 'd:<node>', 'r:<node>' and 't:<node>'; nothing outside
 * this module spells them.
 */
export type WorkItem =
  /** Rule 6: the run is marked cancelled; its open nodes still to complete. */
  | { kind: 'cancel' }
  /** Rule 5: `node` failed for good; the nodes downstream still to complete unreached. */
  | { kind: 'cascade'; node: string }
  /** Rule 4: `node` succeeded; its dependents still to count down, in chunks (fanout.ts). */
  | { kind: 'fan-out'; node: string }
  /** Rule 5: `node` is READY but waits out a retry delay; announced (its queue key written) when due (timing.ts). */
  | { kind: 'retry'; node: string }
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
  /** Where the cascade starts: the failed node's direct dependents. */
  from: string[];
}
export interface FanOutItem {
  at: number;
  /** How many of the node's dependents (in N/ order) have been counted down. */
  done: number;
}

export interface RetryItem {
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
export const deadlineItem: WorkItem = { kind: 'deadline' };
export const cascadeItem = (node: string): WorkItem => ({ kind: 'cascade', node });
export const fanOutItem = (node: string): WorkItem => ({ kind: 'fan-out', node });
export const retryItem = (node: string): WorkItem => ({ kind: 'retry', node });
export const timeoutItem = (node: string): WorkItem => ({ kind: 'timeout', node });

/** The item's name under k/<run>/. */
export function workItemName(item: WorkItem): string {
  if (item.kind === 'cancel') return 'cancel';
  if (item.kind === 'deadline') return 'deadline';
  if (item.kind === 'retry') return `r:${item.node}`;
  if (item.kind === 'timeout') return `t:${item.node}`;
  return `${item.kind === 'cascade' ? 'f' : 'd'}:${item.node}`;
}

/** The item a name under k/<run>/ stands for; undefined for a name this version does not know. */
export function parseWorkItem(name: string): WorkItem | undefined {
  if (name === 'cancel') return cancelItem;
  if (name === 'deadline') return deadlineItem;
  if (name.startsWith('f:')) return cascadeItem(name.slice(2));
  if (name.startsWith('d:')) return fanOutItem(name.slice(2));
  if (name.startsWith('r:')) return retryItem(name.slice(2));
  if (name.startsWith('t:')) return timeoutItem(name.slice(2));
  return undefined;
}

export function workItemKey(keys: Keys, runId: string, item: WorkItem): Buffer {
  return keys.workItem(runId, workItemName(item));
}
