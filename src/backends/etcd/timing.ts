import { timeoutFinish } from '../../model/index.js';
import { ClaimConflictError, NotFoundError } from '../../protocol/errors.js';
import { cancelRun } from './cancel.js';
import type { EtcdContext } from './context.js';
import { finishNode } from './finish.js';
import { readNode } from './node-read.js';
import { decodeJson } from './records.js';
import { releaseRetry } from './retry-due.js';
import { del, getPrefix, modIs } from './store.js';
import {
  type DeadlineItem,
  deadlineItem,
  parseWorkItem,
  type RetryDueItem,
  type TimeoutItem,
  workItemKey,
} from './work-items.js';

/**
 * The time rules on etcd, judged by the process clock (etcd has none a
 * transaction can read; ctx.clock is injectable). A retry with a delay is
 * READY with its due time on the node (`ra`) and a k/<run>/r:<node> work
 * item, but without its queue key, so no subscriber hears of it and claims
 * refuse it until then. Releasing writes the queue key (subscribers get
 * NODE_READY), clears `ra` and drops the item, in one transaction. The
 * finishing process releases it at the due time; any process's sweeper
 * does when that one died.
 *
 * A claim of a node with a timeout (rule 11) writes a k/<run>/t:<node> item
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
async function cancelPastDeadline(ctx: EtcdContext, runId: string): Promise<boolean> {
  let cancelled = true;
  try {
    await cancelRun(ctx, runId, true);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    cancelled = false;
  }
  await ctx.store.writeAll([del(workItemKey(ctx.keys, runId, deadlineItem))]);
  return cancelled;
}

/** One pass: retries whose delay is over are released, attempts past their timeout ended, runs past their deadline cancelled. Cheap when nothing waits (one range of k/). */
export async function sweepTimers(
  ctx: EtcdContext,
): Promise<{ released: number; timedOut: number; runsTimedOut: number }> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const res = await store.txn({ success: [getPrefix(keys.work())] });
  let released = 0;
  let timedOut = 0;
  let runsTimedOut = 0;
  for (const kv of res.responses[0]!.response_range.kvs) {
    const runId = keys.workRun(kv.key);
    const item = parseWorkItem(decodeURIComponent(kv.key.toString().slice(keys.work(runId).length)));
    if (item?.kind !== 'retry-due' && item?.kind !== 'timeout' && item?.kind !== 'deadline') continue;
    if (decodeJson<RetryDueItem | TimeoutItem | DeadlineItem>(kv.value).due > now) continue;
    if (item.kind === 'retry-due' && (await releaseRetry(ctx, runId, item.node))) released++;
    if (item.kind === 'timeout' && (await endTimedOut(ctx, runId, item.node, kv))) timedOut++;
    if (item.kind === 'deadline' && (await cancelPastDeadline(ctx, runId))) runsTimedOut++;
  }
  return { released, timedOut, runsTimedOut };
}
