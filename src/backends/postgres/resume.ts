import {
  type AttemptConclusion,
  checkRetryable,
  conclusionOf,
  type NodeSpec,
  type NodeStatus,
  planRetry,
  runStatusOf,
  topology,
} from '../../model/index.js';
import { NotFoundError } from '../../protocol/errors.js';
import type { Notice } from './notices.js';
import { RETRY_LOCK_RUN, RETRY_PUT_BACK, RETRY_READ_NODES, RETRY_RUN } from './sql.js';
import type { TransitionContext } from './transitions.js';

/**
 * Rule 15 on PostgreSQL: one transaction locks the run (as finishes do) and
 * its nodes, asks planRetry, puts the plan's nodes back and reopens the run;
 * the READY nodes are announced once it commits.
 */
export async function retryRun(ctx: TransitionContext, runId: string, named?: string[]): Promise<void> {
  const now = ctx.clock.now();
  const notice = await ctx.db.retrying('retry', () =>
    ctx.db.tx('retry', async (c): Promise<Notice> => {
      const run = (await c.query<{ remaining: number; conclusion: string | null }>(RETRY_LOCK_RUN, [runId]))
        .rows[0];
      if (!run) throw new NotFoundError('run', runId);
      checkRetryable(runId, {
        status: run.conclusion ? 'COMPLETED' : 'RUNNING',
        conclusion: run.conclusion ?? undefined,
      });
      const rows = (
        await c.query<{
          name: string;
          spec: NodeSpec;
          status: NodeStatus;
          upstream: string[];
          downstream: string[];
          attempt_count: number;
          attempts_before_retry: number;
          last: AttemptConclusion | null;
        }>(RETRY_READ_NODES, [runId])
      ).rows;
      const edges = rows.flatMap((r) => r.upstream.map((u) => ({ source: u, destination: r.name })));
      const plan = planRetry(
        runId,
        rows.map((r) => ({
          name: r.name,
          trigger: r.spec.trigger,
          status: r.status,
          last: r.last ?? undefined,
          attempts: r.attempt_count,
          attemptsBeforeRetry: r.attempts_before_retry,
        })),
        topology({ nodes: rows.map((r) => r.spec), edges }),
        named,
      );
      const upCount = new Map(rows.map((r) => [r.name, r.upstream.length]));
      const back = plan.nodes.map((p) => ({
        name: p.name,
        status: p.status,
        pending: upCount.get(p.name)! - p.tally.succeeded,
        failed: p.tally.failed,
        other: p.tally.completed - p.tally.succeeded - p.tally.failed,
        before: p.attemptsBeforeRetry,
      }));
      const changed = (
        await c.query<{
          name: string;
          runtime: string;
          status: NodeStatus;
          version: number;
          attempt_count: number;
        }>(RETRY_PUT_BACK, [runId, now, JSON.stringify(back)])
      ).rows;
      const remaining = plan.nodes.filter((p) => p.status !== 'COMPLETED').length;
      const conclusion = remaining === 0 ? conclusionOf({ cancelled: false, failed: plan.failed }) : null;
      await c.query(RETRY_RUN, [runId, remaining, plan.failed, conclusion, conclusion ? now : null]);
      const ready = changed.filter((n) => n.status === 'READY');
      return {
        r: runId,
        // Rule 7: nothing runs right after a retry, so WAITING when every node went back.
        rs: runStatusOf({ total: rows.length, completed: rows.length - remaining, running: 0 }),
        ...(conclusion ? { rc: conclusion } : {}),
        ch: changed.map((n) => ({
          n: n.name,
          v: n.version,
          s: n.status,
          a: n.attempt_count,
          st: null,
          ft: n.status === 'COMPLETED' ? now : null,
          c: null,
        })),
        ...(ready.length > 0 ? { rd: ready.map((n) => [n.name, n.runtime] as [string, string]) } : {}),
      };
    }),
  );
  await ctx.publisher.publish([notice]);
}
