import type { Notice } from './notices.js';
import { RELEASE_DUE_RETRIES } from './sql.js';
import type { TransitionContext } from './transitions.js';

/**
 * The time rules' sweeper on PostgreSQL, judged by the database's clock
 * (adagio_now_ms()): retries whose delay is over become claimable and are
 * announced (rule 5). Any number of processes may run it at once: the UPDATE
 * hands each due node to one of them. A notice lost with a dying process
 * costs nothing but latency: subscribers re-query READY nodes periodically.
 */
export async function sweepTimers(ctx: TransitionContext): Promise<{ released: number }> {
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
  return { released: rows.length };
}
