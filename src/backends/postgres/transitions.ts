import {
  type Clock,
  type GraphSpec,
  type IdSource,
  initialStatus,
  type Metadata,
  type NodeSpec,
  type NodeState,
  type Run,
  rfc3339,
  shouldRetry,
  topology,
  truncateOutput,
  validateGraph,
} from '../../model/index.js';
import {
  ClaimConflictError,
  type ClaimedNode,
  type ClaimRequest,
  type FinishRequest,
  InvalidGraphError,
  LeaseExpiredError,
  NotFoundError,
} from '../../protocol/index.js';
import type { Logger } from '../../log.js';
import type { Db, Queryable } from './db.js';
import { COUNTER_SHARDS } from './migrations.js';
import { MAX_PAYLOAD, ms, type NodeDelta, type Notice, publish } from './notices.js';
import {
  ATTEMPT_COLUMNS,
  type AttemptRow,
  groupAttempts,
  inputsOf,
  NODE_COLUMNS,
  type NodeRow,
  toBuffer,
  toNodeState,
} from './rows.js';

/**
 * Every state change of a node, in one place. Each transition is one
 * transaction (often one statement) that touches the node and its direct
 * dependents only (rule 9) and sends one NOTIFY when it commits.
 *
 * Locking order, which keeps transactions free of deadlocks: anything that
 * changes several nodes of a run (finish, cancel) first locks the run's row;
 * a claim changes one node row and nothing else; the reaper skips rows others
 * hold (SKIP LOCKED) and catches them on its next pass.
 */
export interface TransitionContext {
  db: Db;
  channel: string;
  logger: Logger;
  clock: Clock;
  ids: IdSource;
}

interface StartRow {
  name: string;
  idx: number;
  runtime: string;
  spec: NodeSpec;
  upstream: string[];
  downstream: string[];
  status: 'READY' | 'WAITING';
  pending: number;
}

/** Rule 1. One statement: the run, its nodes and the counters, atomically. */
export async function startRun(ctx: TransitionContext, spec: GraphSpec): Promise<Run> {
  const problems = validateGraph(spec);
  if (problems.length > 0) throw new InvalidGraphError(problems);
  const now = ctx.clock.now();
  const id = ctx.ids.next(now);
  const topo = topology(spec);
  const rows: StartRow[] = spec.nodes.map((n, idx) => {
    const upstream = topo.upstream.get(n.name)!;
    const s: NodeSpec = {
      name: n.name,
      runtime: n.runtime,
      metadata: n.metadata ?? {},
      retry: n.retry ?? {},
    };
    return {
      name: n.name,
      idx,
      runtime: n.runtime,
      spec: s,
      upstream,
      downstream: topo.downstream.get(n.name)!,
      status: initialStatus(upstream.length) as 'READY' | 'WAITING',
      pending: upstream.length,
    };
  });
  const ready = rows.filter((r) => r.status === 'READY');
  const notice: Notice = { r: id, rs: 'WAITING', rd: ready.map((r) => [r.name, r.runtime]) };
  const edges = spec.edges.map((e) => ({ source: e.source, destination: e.destination }));
  const shard = Math.floor(Math.random() * COUNTER_SHARDS);
  // ON CONFLICT: a retry after a lost reply finds its own run already stored.
  await ctx.db.retrying('start', () =>
    ctx.db.query(
      'start',
      `WITH r AS (
         INSERT INTO runs (id, created_at, edges, node_count, remaining) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (id) DO NOTHING RETURNING id
       ), n AS (
         INSERT INTO nodes (run_id, name, idx, runtime, spec, upstream, downstream, status, pending_upstream)
         SELECT r.id, x.name, x.idx, x.runtime, x.spec, x.upstream, x.downstream, x.status, x.pending
         FROM r, jsonb_to_recordset($5::jsonb)
           AS x(name text, idx int, runtime text, spec jsonb, upstream text[], downstream text[], status text, pending int)
       ), c AS (
         UPDATE counters SET runs = runs + 1, nodes = nodes + $4 WHERE shard = $6 AND EXISTS (SELECT 1 FROM r)
       )
       SELECT count(*) FROM r`,
      [
        id,
        now,
        JSON.stringify(edges),
        rows.length,
        JSON.stringify(rows),
        shard,
      ],
    ),
  );
  await publish(ctx.db, ctx.channel, [notice], ctx.logger);
  return {
    id,
    createdAt: rfc3339(now),
    nodes: rows.map(
      (r): NodeState => ({
        spec: r.spec,
        status: r.status,
        attempts: [],
        startedAt: '',
        finishedAt: '',
        inputs: {},
      }),
    ),
    edges,
    status: 'WAITING',
  };
}

/**
 * Rule 2 and rule 3's recovery, as one statement that cannot double-claim:
 * the row only matches while READY (or RUNNING and orphaned) and the lease
 * is live by the database's clock; concurrent claimers queue on the row
 * lock and re-check, so exactly one matches.
 */
export async function claimNode(ctx: TransitionContext, req: ClaimRequest): Promise<ClaimedNode | undefined> {
  const now = ctx.clock.now();
  const claimId = ctx.ids.next(now);
  return ctx.db.retrying('claim', async (attempt) => {
    if (attempt > 1) {
      // The previous try may have committed before its reply was lost.
      const mine = await ctx.db.query<NodeRow>(
        'claim',
        `SELECT ${NODE_COLUMNS} FROM nodes WHERE run_id = $1 AND name = $2 AND claim_id = $3 AND status = 'RUNNING'`,
        [req.runId, req.node, claimId],
      );
      if (mine.rows[0]) return claimed(ctx, req.runId, claimId, mine.rows[0]);
    }
    // The notice is built in SQL from the updated row, so claim stays one round trip.
    const { rows } = await ctx.db.query<NodeRow>(
      'claim',
      `WITH c AS (
         UPDATE nodes SET
           status = 'RUNNING',
           previous_claim_id = CASE WHEN status = 'RUNNING' THEN claim_id END,
           started_at = CASE WHEN status = 'READY' THEN $6::bigint ELSE started_at END,
           finished_at = CASE WHEN status = 'READY' THEN NULL ELSE finished_at END,
           claim_id = $3, claim_agent = $4, claim_metadata = $5, lease_id = $7, orphaned = false,
           version = version + 1
         WHERE run_id = $1 AND name = $2
           AND (status = 'READY' OR (status = 'RUNNING' AND orphaned))
           AND EXISTS (SELECT 1 FROM leases WHERE id = $7 AND expires_at > now())
         RETURNING ${NODE_COLUMNS}
       )
       SELECT c.*, pg_notify($8, CASE WHEN length(p.payload) <= ${MAX_PAYLOAD} THEN p.payload
                                 ELSE json_build_object('r', $1::text, 'rs', 'RUNNING', 'all', 1)::text END) AS notified
       FROM c, LATERAL (SELECT json_build_object('r', $1::text, 'rs', 'RUNNING', 'ch', json_build_array(json_build_object(
         'n', c.name, 'v', c.version, 's', 'RUNNING', 'a', c.attempt_count, 'st', c.started_at,
         'c', json_build_object('id', c.claim_id, 'ag', c.claim_agent, 'md', c.claim_metadata))))::text AS payload) p`,
      [
        req.runId,
        req.node,
        claimId,
        req.agentId,
        JSON.stringify(req.metadata ?? {}),
        now,
        req.leaseId,
        ctx.channel,
      ],
      { asyncCommit: true }, // see Db.fast: a lost claim only means the node runs again
    );
    if (rows[0]) return claimed(ctx, req.runId, claimId, rows[0]);
    const why = await ctx.db.query<{ lease: boolean; run: boolean; node: boolean }>(
      'claim',
      `SELECT EXISTS (SELECT 1 FROM leases WHERE id = $3 AND expires_at > now()) AS lease,
              EXISTS (SELECT 1 FROM runs WHERE id = $1) AS run,
              EXISTS (SELECT 1 FROM nodes WHERE run_id = $1 AND name = $2) AS node`,
      [req.runId, req.node, req.leaseId],
    );
    const w = why.rows[0]!;
    if (!w.lease) throw new LeaseExpiredError(req.leaseId);
    if (!w.run) throw new NotFoundError('run', req.runId);
    if (!w.node) throw new NotFoundError('node', `${req.runId}/${req.node}`);
    return undefined; // lost the race, or not claimable
  });
}

async function claimed(
  ctx: TransitionContext,
  runId: string,
  claimId: string,
  row: NodeRow,
): Promise<ClaimedNode> {
  const names = [...(row.attempt_count > 0 ? [row.name] : []), ...row.upstream];
  const attempts =
    names.length === 0
      ? []
      : (
          await ctx.db.query<AttemptRow>(
            'claim',
            `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 AND node = ANY($2)`,
            [runId, names],
          )
        ).rows;
  const byNode = groupAttempts(attempts);
  const last = (n: string) => byNode.get(n)?.at(-1)?.output;
  return {
    runId,
    claimId,
    attempt: row.attempt_count + 1,
    orphan: row.previous_claim_id !== null,
    previousClaimId: row.previous_claim_id ?? undefined,
    node: toNodeState(row, byNode.get(row.name) ?? [], inputsOf(row, last)),
  };
}

interface LockedNode {
  runtime: string;
  spec: NodeSpec;
  downstream: string[];
  status: string;
  claim_id: string | null;
  orphaned: boolean;
  attempt_count: number;
  fail_count: number;
  error_count: number;
  started_at: string | null;
  version: number;
}

/** Rules 4 and 5: fenced by the claim, in one transaction. */
export async function finishNode(ctx: TransitionContext, req: FinishRequest): Promise<void> {
  const now = ctx.clock.now();
  const output = toBuffer(truncateOutput(req.output ?? new Uint8Array()));
  const notice = await ctx.db.retrying('finish', (attempt) =>
    ctx.db.tx('finish', async (c): Promise<Notice | undefined> => {
      const run = (
        await c.query<{ node_count: number; remaining: number; failed: boolean; cancelled: boolean }>(
          'SELECT node_count, remaining, failed, cancelled FROM runs WHERE id = $1 FOR NO KEY UPDATE',
          [req.runId],
        )
      ).rows[0];
      if (!run) throw new NotFoundError('run', req.runId);
      const node = (
        await c.query<LockedNode>(
          `SELECT runtime, spec, downstream, status, claim_id, orphaned, attempt_count, fail_count, error_count,
             started_at, version
           FROM nodes WHERE run_id = $1 AND name = $2 FOR UPDATE`,
          [req.runId, req.node],
        )
      ).rows[0];
      if (!node) throw new NotFoundError('node', `${req.runId}/${req.node}`);
      if (node.status !== 'RUNNING' || node.claim_id !== req.claimId || node.orphaned) {
        if (attempt > 1 && (await alreadyRecorded(c, req))) return undefined;
        throw new ClaimConflictError(
          `claim ${req.claimId} on ${req.runId}/${req.node} is not the node's live claim (node ${node.status}${node.orphaned ? ', orphaned' : ''}${run.cancelled ? ', run cancelled' : ''})`,
          req.runId,
          req.node,
        );
      }
      const previous = [
        ...Array.from({ length: node.fail_count }, () => ({ conclusion: 'FAIL' as const })),
        ...Array.from({ length: node.error_count }, () => ({ conclusion: 'ERROR' as const })),
      ];
      const retry = shouldRetry(node.spec, req.conclusion, previous);
      const status = retry ? 'READY' : 'COMPLETED';
      const updated = await c.query(
        `WITH a AS (
           INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
           SELECT run_id, name, attempt_count + 1, $4, $5, $6, claim_id, claim_agent, started_at, $7
           FROM nodes WHERE run_id = $1 AND name = $2
         )
         UPDATE nodes SET status = $8, attempt_count = attempt_count + 1,
           fail_count = fail_count + ($4 = 'FAIL')::int, error_count = error_count + ($4 = 'ERROR')::int,
           claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
           previous_claim_id = NULL, finished_at = CASE WHEN $8 = 'COMPLETED' THEN $7::bigint END,
           version = version + 1
         WHERE run_id = $1 AND name = $2 AND claim_id = $3 AND status = 'RUNNING' AND NOT orphaned`,
        [
          req.runId,
          req.node,
          req.claimId,
          req.conclusion,
          JSON.stringify(req.metadata ?? {}),
          output,
          now,
          status,
        ],
      );
      if (updated.rowCount !== 1)
        throw new ClaimConflictError(
          `claim ${req.claimId} on ${req.runId}/${req.node} lost its node`,
          req.runId,
          req.node,
        );

      const changed: NodeDelta[] = [
        {
          n: req.node,
          v: node.version + 1,
          s: status,
          a: node.attempt_count + 1,
          st: ms(node.started_at),
          ft: retry ? null : now,
        },
      ];
      const notice: Notice = { r: req.runId, ch: changed };
      let completed = 0;
      let failed = false;
      if (retry) notice.rd = [[req.node, node.runtime]];
      else if (req.conclusion === 'SUCCESS') {
        completed = 1;
        if (node.downstream.length > 0) {
          const deps = await c.query<{ name: string; runtime: string; status: string; version: number }>(
            `UPDATE nodes SET pending_upstream = pending_upstream - 1,
               status = CASE WHEN pending_upstream = 1 AND status = 'WAITING' THEN 'READY' ELSE status END,
               version = version + 1
             WHERE run_id = $1 AND name = ANY($2) RETURNING name, runtime, status, version`,
            [req.runId, node.downstream],
          );
          // A dependent READY now was WAITING before: it has never run.
          const ready = deps.rows.filter((d) => d.status === 'READY');
          for (const d of ready) changed.push({ n: d.name, v: d.version, s: 'READY', a: 0 });
          if (ready.length > 0) notice.rd = ready.map((d) => [d.name, d.runtime]);
        }
      } else {
        // Final failure: the node and everything downstream not yet completed completes (unreached).
        failed = true;
        const unreached = await completeDownstream(c, req.runId, node.downstream, now);
        completed = 1 + unreached.length;
        for (const u of unreached) changed.push({ n: u.name, v: u.version, s: 'COMPLETED', a: 0, ft: now });
      }
      const remaining = run.remaining - completed;
      if (remaining === 0) {
        notice.rs = 'COMPLETED';
        notice.rc = run.cancelled ? 'CANCELLED' : run.failed || failed ? 'FAIL' : 'SUCCESS';
      } else if (remaining < run.node_count) notice.rs = 'RUNNING';
      else {
        // Back to READY with nothing completed yet: the run is RUNNING only if another node is.
        const r = await c.query(`SELECT 1 FROM nodes WHERE run_id = $1 AND status = 'RUNNING' LIMIT 1`, [
          req.runId,
        ]);
        notice.rs = r.rowCount ? 'RUNNING' : 'WAITING';
      }
      await c.query(
        `UPDATE runs SET remaining = $2, failed = failed OR $3, conclusion = $4 WHERE id = $1 AND $5`,
        [req.runId, remaining, failed, notice.rc ?? null, completed > 0],
      );
      return notice;
    }),
  );
  if (notice) await publish(ctx.db, ctx.channel, [notice], ctx.logger);
}

async function alreadyRecorded(c: Queryable, req: FinishRequest): Promise<boolean> {
  const r = await c.query(
    'SELECT 1 FROM attempts WHERE run_id = $1 AND node = $2 AND claim_id = $3 AND conclusion = $4',
    [req.runId, req.node, req.claimId, req.conclusion],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Completes, with no attempt, every node downstream of a failed one that is
 * not completed yet; the walk stops at completed nodes, whose own downstream
 * was completed when they were. Each node completes once, so the cost is
 * amortised O(1) per node over the run.
 */
async function completeDownstream(
  c: Queryable,
  runId: string,
  from: string[],
  now: number,
): Promise<{ name: string; version: number }[]> {
  if (from.length === 0) return [];
  const { rows } = await c.query<{ name: string; version: number }>(
    `WITH RECURSIVE walk(name) AS (
       SELECT unnest($2::text[])
       UNION
       SELECT d.name FROM walk w
         JOIN nodes n ON n.run_id = $1 AND n.name = w.name AND n.status <> 'COMPLETED'
         CROSS JOIN LATERAL unnest(n.downstream) AS d(name)
     )
     UPDATE nodes SET status = 'COMPLETED', finished_at = $3, version = version + 1
     WHERE run_id = $1 AND name IN (SELECT name FROM walk) AND status <> 'COMPLETED'
     RETURNING name, version`,
    [runId, from, now],
  );
  return rows;
}

/**
 * Rule 6. Returns false when the run had already completed. Locks the run,
 * then its unfinished nodes, so no claim or finish can slip in between.
 */
export async function cancelRun(ctx: TransitionContext, runId: string): Promise<boolean> {
  const now = ctx.clock.now();
  const notice = await ctx.db.retrying('cancel', () =>
    ctx.db.tx('cancel', async (c): Promise<Notice | undefined> => {
      const run = (
        await c.query<{ conclusion: string | null }>(
          'SELECT conclusion FROM runs WHERE id = $1 FOR NO KEY UPDATE',
          [runId],
        )
      ).rows[0];
      if (!run) throw new NotFoundError('run', runId);
      if (run.conclusion) return undefined;
      const open = await c.query<{
        name: string;
        status: string;
        claim_id: string | null;
        claim_agent: string | null;
        started_at: string | null;
        attempt_count: number;
      }>(
        `SELECT name, status, claim_id, claim_agent, started_at, attempt_count
         FROM nodes WHERE run_id = $1 AND status <> 'COMPLETED' FOR UPDATE`,
        [runId],
      );
      const running = open.rows.filter((n) => n.status === 'RUNNING' && n.claim_id);
      if (running.length > 0)
        await c.query(
          `INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
           SELECT $1, x.node, x.n, 'CANCELLED', '{}', '', x.claim_id, x.agent_id, x.started_at, $2
           FROM unnest($3::text[], $4::int[], $5::text[], $6::text[], $7::bigint[]) AS x(node, n, claim_id, agent_id, started_at)`,
          [
            runId,
            now,
            running.map((n) => n.name),
            running.map((n) => n.attempt_count + 1),
            running.map((n) => n.claim_id),
            running.map((n) => n.claim_agent ?? ''),
            running.map((n) => n.started_at),
          ],
        );
      const done = await c.query<{
        name: string;
        version: number;
        attempt_count: number;
        started_at: string | null;
      }>(
        `UPDATE nodes SET status = 'COMPLETED', finished_at = $2,
           attempt_count = attempt_count + (status = 'RUNNING' AND claim_id IS NOT NULL)::int,
           claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
           previous_claim_id = NULL, version = version + 1
         WHERE run_id = $1 AND name = ANY($3)
         RETURNING name, version, attempt_count, started_at`,
        [runId, now, open.rows.map((n) => n.name)],
      );
      const notice: Notice = {
        r: runId,
        rs: 'COMPLETED',
        rc: 'CANCELLED',
        ch: done.rows.map((n) => ({
          n: n.name,
          v: n.version,
          s: 'COMPLETED',
          a: n.attempt_count,
          st: ms(n.started_at),
          ft: now,
        })),
      };
      await c.query(`UPDATE runs SET remaining = 0, cancelled = true, conclusion = 'CANCELLED' WHERE id = $1`, [
        runId,
      ]);
      return notice;
    }),
  );
  if (!notice) return false;
  await publish(ctx.db, ctx.channel, [notice], ctx.logger);
  return true;
}

interface OrphanRow {
  run_id: string;
  name: string;
  runtime: string;
  version: number;
  attempt_count: number;
  started_at: string | null;
  claim_id: string;
  claim_agent: string | null;
  claim_metadata: Metadata | null;
}

/**
 * Rule 3: orphans every RUNNING node whose claim's lease is gone or past its
 * expiry by the database's clock. Any number of processes may run this at
 * once: rows another transaction holds are skipped and caught next time.
 * Returns the nodes orphaned.
 */
export async function orphanLapsedClaims(ctx: TransitionContext): Promise<number> {
  const { count, notices } = await ctx.db.tx('orphan lapsed claims', async (c) => {
    const { rows } = await c.query<OrphanRow>(
      `UPDATE nodes SET orphaned = true, version = version + 1
       WHERE (run_id, name) IN (
         SELECT run_id, name FROM nodes n
         WHERE status = 'RUNNING' AND NOT orphaned
           AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.id = n.lease_id AND l.expires_at > now())
         FOR UPDATE SKIP LOCKED)
       AND status = 'RUNNING' AND NOT orphaned
       RETURNING run_id, name, runtime, version, attempt_count, started_at, claim_id, claim_agent, claim_metadata`,
    );
    const byRun = new Map<string, Notice>();
    for (const r of rows) {
      let n = byRun.get(r.run_id);
      if (!n) {
        n = { r: r.run_id, rs: 'RUNNING', ch: [], or: [] };
        byRun.set(r.run_id, n);
      }
      n.ch!.push({
        n: r.name,
        v: r.version,
        s: 'RUNNING',
        a: r.attempt_count,
        st: ms(r.started_at),
        c: { id: r.claim_id, ag: r.claim_agent ?? '', md: r.claim_metadata ?? {}, o: true },
      });
      n.or!.push([r.name, r.runtime]);
    }
    // One notice per run; past a handful of runs, one "catch up everything" notice instead.
    const notices = byRun.size > 20 ? [{ r: '*', all: 1, cu: 1 } satisfies Notice] : [...byRun.values()];
    return { count: rows.length, notices };
  });
  await publish(ctx.db, ctx.channel, notices, ctx.logger);
  return count;
}
