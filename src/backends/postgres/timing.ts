import { type NodeSpec, timeoutFinish } from '../../model/index.js';
import { ClaimConflictError, NotFoundError } from '../../protocol/errors.js';
import type { Notice } from './notices.js';
import { RELEASE_DUE_RETRIES, RUNS_PAST_DEADLINE, TIMED_OUT_ATTEMPTS } from './sql.js';
import { cancelRun, finishNode, type TransitionContext } from './transitions.js';

/**
 * The time rules' sweeper on PostgreSQL, judged by the database's clock
 * (adagio_now_ms()): retries whose delay is over become claimable and are
 * announced (rule 5). Any number of processes may run it at once: the UPDATE
 * hands each due node to one of them. A notice lost with a dying process
 * costs nothing but latency: subscribers re-query READY nodes periodically.
 * Attempts past their node's timeout (rule 11) are finished with ERROR under
 * their claim through the ordinary finish, whose fence settles a race with
 * the holder's own finish; the holder's late finish is then refused. Runs
 * past their deadline (rule 13) are cancelled through the ordinary cancel.
 */
export async function sweepTimers(
  ctx: TransitionContext,
): Promise<{ released: number; timedOut: number; runsTimedOut: number }> {
  const released = await releaseDueRetries(ctx);
  const timedOut = await endTimedOut(ctx);
  const runsTimedOut = await cancelPastDeadline(ctx);
  return { released, timedOut, runsTimedOut };
}

/** Rule 13: open runs past their deadline are cancelled as by Cancel, concluding TIMED_OUT. */
async function cancelPastDeadline(ctx: TransitionContext): Promise<number> {
  const { rows } = await ctx.db.query<{ id: string }>('runs past deadline', RUNS_PAST_DEADLINE);
  let cancelled = 0;
  for (const r of rows) if (await cancelRun(ctx, r.id, true)) cancelled++;
  return cancelled;
}

async function endTimedOut(ctx: TransitionContext): Promise<number> {
  const { rows } = await ctx.db.query<{ run_id: string; name: string; claim_id: string; spec: NodeSpec }>(
    'timed-out attempts',
    TIMED_OUT_ATTEMPTS,
  );
  let ended = 0;
  for (const r of rows)
    try {
      await finishNode(ctx, { runId: r.run_id, node: r.name, claimId: r.claim_id, ...timeoutFinish(r.spec) });
      ended++;
    } catch (e) {
      // Finished, cancelled or orphaned since the read: nothing left to end.
      if (!(e instanceof ClaimConflictError || e instanceof NotFoundError)) throw e;
    }
  return ended;
}

async function releaseDueRetries(ctx: TransitionContext): Promise<number> {
  const { rows } = await ctx.db.query<{
    run_id: string;
    name: string;
    runtime: string;
    version: number;
    attempt_count: number;
  }>('release due retries', RELEASE_DUE_RETRIES);
  const byRun = new Map<string, Notice>();
  for (const r of rows) {
    const n = byRun.get(r.run_id) ?? { r: r.run_id, rd: [], ch: [] };
    byRun.set(r.run_id, n);
    n.rd!.push([r.name, r.runtime]);
    n.ch!.push({ n: r.name, v: r.version, s: 'READY', a: r.attempt_count });
  }
  await ctx.publisher.publish([...byRun.values()]);
  return rows.length;
}
