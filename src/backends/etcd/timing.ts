import { timeoutFinish } from '../../model/index.js';
import { ClaimConflictError, NotFoundError } from '../../protocol/errors.js';
import { cancelRun } from './cancel.js';
import type { EtcdContext } from './context.js';
import { finishNode } from './finish.js';
import { TIMERS_PAGE } from './limits.js';
import { readNode } from './node-read.js';
import { decodeJson } from './records.js';
import { releaseRetry } from './retry-due.js';
import { del, getRange, modIs } from './store.js';
import {
  type DeadlineItem,
  isTimed,
  parseWorkItem,
  type RetryDueItem,
  type TimedItem,
  type TimeoutItem,
} from './work-items.js';

/**
 * The time rules on etcd, judged by the process clock (etcd has none a
 * transaction can read; ctx.clock is injectable). A retry with a delay is
 * READY with its due time on the node (`ra`) and a d/<due>/<run>/r:<node> work
 * item, but without its queue key, so no subscriber hears of it and claims
 * refuse it until then. Releasing writes the queue key (subscribers get
 * NODE_READY), clears `ra` and drops the item, in one transaction. The
 * finishing process releases it at the due time; any process's sweeper
 * does when that one died.
 *
 * A claim of a node with a timeout (rule 11) writes a d/<due>/<run>/t:<node> item
 * with its due time and claim id; the finish deletes it. When one is due,
 * the sweeper finishes the attempt with ERROR under that claim, through the
 * ordinary finish (rule 4's fence: a finish that got there first wins, and
 * the holder's late finish is refused after this one).
 */

/** Ends an attempt past its node's timeout (rule 11), or drops the item when the attempt ended otherwise. */
async function endTimedOut(
  ctx: EtcdContext,
  runId: string,
  node: string,
  kv: { key: Buffer; value: Buffer; mod_revision: string },
): Promise<boolean> {
  const item = decodeJson<TimeoutItem>(kv.value);
  const r = await readNode(ctx, runId, node, false);
  const spec = r.node?.rec.spec;
  try {
    if (!spec) throw new ClaimConflictError('the node is gone', runId, node);
    await finishNode(ctx, { runId, node, claimId: item.claim, ...timeoutFinish(spec) }, { fresh: true });
    return true;
  } catch (e) {
    if (!(e instanceof ClaimConflictError || e instanceof NotFoundError)) throw e;
    // Finished, cancelled or orphaned first; the compare spares an item a newer claim wrote.
    await ctx.store.txn({ compare: [modIs(kv.key, kv.mod_revision)], success: [del(kv.key)] });
    return false;
  }
}

/**
 * Rule 13: the run's deadline passed; it is cancelled as by Cancel (marked
 * TIMED_OUT), unless it concluded first. The item goes either way.
 */
async function cancelPastDeadline(ctx: EtcdContext, runId: string, itemKey: Buffer): Promise<boolean> {
  let cancelled = true;
  try {
    await cancelRun(ctx, runId, true);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    cancelled = false;
  }
  await ctx.store.writeAll([del(itemKey)]);
  return cancelled;
}

export interface TimersSwept {
  released: number;
  timedOut: number;
  runsTimedOut: number;
}

/**
 * Does a timed item's work if it is due (its value says when): releases a
 * retry, ends an attempt past its timeout, cancels a run past its deadline.
 * Each judges the item against the node or run as it is now, so an item
 * whose work went otherwise (the attempt finished, the run concluded or was
 * deleted) is only deleted. The item is at `kv.key`: under d/<due>/, or k/<run>/
 * where older stores kept it (sweep.ts).
 */
export async function fireTimed(
  ctx: EtcdContext,
  runId: string,
  item: TimedItem,
  kv: { key: Buffer; value: Buffer; mod_revision: string },
  swept: TimersSwept,
): Promise<void> {
  if (decodeJson<RetryDueItem | TimeoutItem | DeadlineItem>(kv.value).due > ctx.clock.now()) return;
  if (item.kind === 'retry-due' && (await releaseRetry(ctx, runId, item.node, kv.key))) swept.released++;
  if (item.kind === 'timeout' && (await endTimedOut(ctx, runId, item.node, kv))) swept.timedOut++;
  if (item.kind === 'deadline' && (await cancelPastDeadline(ctx, runId, kv.key))) swept.runsTimedOut++;
}

/**
 * One pass: retries whose delay is over are released, attempts past their
 * timeout ended, runs past their deadline cancelled. Reads only the items
 * due by now (d/ is ordered by due time), `TIMERS_PAGE` at a time, so its
 * cost is what is due, not what waits: a million runs with deadlines an hour
 * away cost nothing until then.
 */
export async function sweepTimers(ctx: EtcdContext): Promise<TimersSwept> {
  const { keys, store } = ctx;
  const swept: TimersSwept = { released: 0, timedOut: 0, runsTimedOut: 0 };
  const due = keys.timersDue(ctx.clock.now());
  let from = due.key;
  while (true) {
    const res = await store.txn({
      success: [getRange({ key: from, range_end: due.range_end }, { limit: TIMERS_PAGE })],
    });
    const { kvs, more } = res.responses[0]!.response_range;
    for (const kv of kvs) {
      const timer = keys.parseTimer(kv.key);
      const item = timer && parseWorkItem(timer.item);
      if (!timer || !item || !isTimed(item)) {
        ctx.logger.warn('unknown timed item left alone', { key: kv.key.toString() });
        continue;
      }
      await fireTimed(ctx, timer.run, item, kv, swept);
    }
    const last = kvs.at(-1);
    if (!more || !last) return swept;
    from = Buffer.concat([last.key, Buffer.from([0])]);
  }
}
