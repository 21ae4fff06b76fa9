import { nextAttemptAt, nodeTimeoutMs } from '../../model/index.js';
import { type Item, type Key, N, S, type Tx } from './db.js';
import type { NodeData } from './items.js';

/**
 * The time rules without a server clock (like etcd): the process clock
 * (ctx.clock) decides. Each timed thing is an item of the `timers` partition
 * keyed by its due time, so a sweep Queries `sk <= now` (never a scan):
 * `r` a retry delay (rule 5), `t` a node timeout (rule 11), `d` a run
 * deadline (rule 13). An item is only a reminder: what it does is conditioned
 * on the node or run still being as the item says, so stale ones are dropped.
 *
 * This module writes the timers (claim, finish and start arm and disarm them);
 * timing.ts sweeps them, through finish and cancel, so the two are apart to
 * keep finish.ts and the sweep from importing each other.
 */
export const TIMERS_PK = 'timers';
export type Kind = 'r' | 't' | 'd';
export const due = (ms: number) => String(ms).padStart(15, '0');
export const timerKey = (at: number, kind: Kind, runId: string, node = '', claim = ''): Key => ({
  pk: TIMERS_PK,
  sk: `${due(at)}#${kind}#${runId}#${node}#${claim}`,
});

function timerItem(at: number, kind: Kind, runId: string, node = '', claim = ''): Item {
  const k = timerKey(at, kind, runId, node, claim);
  return { pk: S(k.pk), sk: S(k.sk), at: N(at), d: S(JSON.stringify({ kind, runId, node, claim })) };
}

/** Rule 5: a finish's retry is due later: the node keeps `readyAt` (out of the ready index) and a timer. */
export function delayRetry(
  tx: Tx,
  d: NodeData,
  prior: NodeData['retries'],
  conclusion: 'FAIL' | 'ERROR',
  runId: string,
  now: number,
): void {
  const at = nextAttemptAt(d.spec, conclusion, prior, now);
  if (at <= 0) return;
  d.readyAt = at;
  tx.put(timerItem(at, 'r', runId, d.spec.name), 'any');
}

/** Rule 11: a claim of a node with a timeout gets its timer (from the attempt's start). */
export function armTimeout(tx: Tx, d: NodeData, runId: string, claimId: string): void {
  const ms = nodeTimeoutMs(d.spec);
  if (ms !== undefined) tx.put(timerItem(d.startedAt + ms, 't', runId, d.spec.name, claimId), 'any');
}

/** Rule 11: the attempt finished: its timer goes in the same transaction (a cancel leaves it to lapse stale). */
export function disarmTimeout(tx: Tx, d: NodeData, runId: string, claimId: string): void {
  const ms = nodeTimeoutMs(d.spec);
  if (ms !== undefined) tx.del(timerKey(d.startedAt + ms, 't', runId, d.spec.name, claimId));
}

/** Rule 13: a run with a deadline gets its timer at start. */
export function armDeadline(tx: Tx, runId: string, at: number | undefined): void {
  if (at) tx.put(timerItem(at, 'd', runId), 'any');
}
