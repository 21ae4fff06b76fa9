import type { Logger } from '../../log.js';
import {
  type Clock,
  cancelledAttemptFields,
  checkClaimRefs,
  checkConclusion,
  checkMetadata,
  checkStartedAt,
  checkStartOptions,
  conclusionOf,
  deadlineAt,
  type GraphSpec,
  type IdSource,
  initialStatus,
  type Metadata,
  type NodeSpec,
  type NodeState,
  nodeBackoffMs,
  nodeTimeoutMs,
  normalizeNodeSpec,
  planStart,
  type Run,
  rfc3339,
  topology,
  truncateOutput,
} from '../../model/index.js';
import {
  type ClaimedNode,
  type ClaimRef,
  type ClaimRequest,
  claimNotLive,
  type FinishRequest,
  LeaseExpiredError,
  NotFoundError,
  nodeNotFound,
  type StartOptions,
} from '../../protocol/index.js';
import type { AttemptJson, ClaimBatcher } from './claims.js';
import type { Db } from './db.js';
import type { FinishBatcher } from './finishes.js';
import { ms, type Notice, type Publisher } from './notices.js';
import {
  type AttemptRow,
  groupAttempts,
  inputsOf,
  mayHaveStaleUpstream,
  type NodeRow,
  staleUpstream,
  toBuffer,
  toNodeState,
} from './rows.js';
import { RELEASE_CLAIMS, UPSTREAM_RETRY_COUNTS } from './sql.js';
import type { StartBatcher } from './starts.js';
import { getWorkflow } from './workflows.js';

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
  /** Sends notices after their transaction commits, coalescing concurrent ones. */
  publisher: Publisher;
  /** Runs finishes, batching concurrent ones. */
  finishes: FinishBatcher;
  /** Runs claims, batching concurrent ones. */
  claims: ClaimBatcher;
  /** Stores new runs, batching concurrent ones. */
  starts: StartBatcher;
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
  /** The retry backoffs in ms, for finish_nodes' retry_delay_ms (model/rules.ts nodeBackoffMs). */
  backoff?: ReturnType<typeof nodeBackoffMs>;
  /** Rule 11: the node's timeout in ms, for the sweeper. */
  timeout_ms?: number;
}

/**
 * Rule 1. One statement (shared with concurrent starts): the run, its nodes
 * and the counters, atomically. Rule 17: a start with a request id that is
 * taken stores nothing (ON CONFLICT) and returns the run holding it.
 */
export async function startRun(
  ctx: TransitionContext,
  given: GraphSpec | undefined,
  options: StartOptions,
  /** The run holding a request id, while it is kept (reads.ts: runByRequest). */
  runByRequest: (requestId: string) => Promise<{ id: string; run: Run } | undefined>,
): Promise<Run> {
  checkStartOptions(given, options);
  if (options.requestId !== undefined) {
    const earlier = await runByRequest(options.requestId);
    if (earlier) return earlier.run;
  }
  const definition = options.workflow
    ? await getWorkflow(ctx.db, options.workflow, options.version)
    : undefined;
  const { spec, identity } = planStart(given, options, definition);
  const now = ctx.clock.now();
  const id = ctx.ids.next(now);
  const topo = topology(spec);
  const rows: StartRow[] = spec.nodes.map((n, idx) => {
    const upstream = topo.upstream.get(n.name)!;
    const s = normalizeNodeSpec(n);
    return {
      name: n.name,
      idx,
      runtime: n.runtime,
      spec: s,
      upstream,
      downstream: topo.downstream.get(n.name)!,
      status: initialStatus(upstream.length) as 'READY' | 'WAITING',
      pending: upstream.length,
      backoff: nodeBackoffMs(s),
      timeout_ms: nodeTimeoutMs(s),
    };
  });
  const ready = rows.filter((r) => r.status === 'READY');
  const notice: Notice = { r: id, rs: 'WAITING', rd: ready.map((r) => [r.name, r.runtime]) };
  const edges = spec.edges.map((e) => ({ source: e.source, destination: e.destination }));
  const deadline = deadlineAt(spec, now);
  await ctx.starts.submit({
    id,
    createdAt: now,
    edges: JSON.stringify(edges),
    nodeCount: rows.length,
    nodes: JSON.stringify(rows.map((r) => ({ run_id: id, ...r }))),
    deadlineAt: deadline ?? null,
    identity: JSON.stringify(identity),
  });
  if (identity.requestId !== undefined) {
    const holder = await runByRequest(identity.requestId);
    // Another start took the request id first (ours stored nothing).
    if (holder && holder.id !== id) return holder.run;
    // Neither: the holder was deleted by retention in between; start again.
    if (!holder) return startRun(ctx, given, options, runByRequest);
  }
  // Not awaited: the run is stored; its wake-up follows in this process's next NOTIFY batch.
  ctx.publisher.post([notice]);
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
    ...(deadline ? { deadlineAt: rfc3339(deadline) } : {}),
    ...identity,
  };
}

/**
 * Rule 2 and rule 3's recovery: one statement that cannot double-claim,
 * shared with this process's concurrent claims (claims.ts). When it did not
 * claim, one more query tells a lost race from a lapsed lease or a missing
 * run or node.
 */
export async function claimNode(ctx: TransitionContext, req: ClaimRequest): Promise<ClaimedNode | undefined> {
  checkMetadata(req.metadata);
  const now = ctx.clock.now();
  const claimId = ctx.ids.next(now);
  const row = await ctx.claims.submit({
    runId: req.runId,
    node: req.node,
    claimId,
    agentId: req.agentId,
    metadata: JSON.stringify(req.metadata ?? {}),
    leaseId: req.leaseId,
    now,
  });
  if (row) {
    announceClaim(ctx, req.runId, row);
    // Rare (a trigger other than all_success): which upstream SUCCESS is from before a retry put it back.
    const stale = mayHaveStaleUpstream(row)
      ? staleUpstream(
          (
            await ctx.db.retrying('claim', () =>
              ctx.db.query<NodeRow>('claim', UPSTREAM_RETRY_COUNTS, [req.runId, row.upstream]),
            )
          ).rows,
        )
      : undefined;
    return claimedWith(req.runId, claimId, row, attemptsFromJson(row.attempts_json), stale);
  }
  const why = await ctx.db.retrying('claim', () =>
    ctx.db.query<{ lease: boolean; run: boolean; node: boolean }>(
      'claim',
      `SELECT EXISTS (SELECT 1 FROM leases WHERE id = $3 AND expires_at > now()) AS lease,
              EXISTS (SELECT 1 FROM runs WHERE id = $1) AS run,
              EXISTS (SELECT 1 FROM nodes WHERE run_id = $1 AND name = $2) AS node`,
      [req.runId, req.node, req.leaseId],
    ),
  );
  const w = why.rows[0]!;
  if (!w.lease) throw new LeaseExpiredError(req.leaseId);
  if (!w.run) throw new NotFoundError('run', req.runId);
  if (!w.node) throw nodeNotFound(req.runId, req.node);
  return undefined; // lost the race, or not claimable
}

/**
 * Tells watchers the node is RUNNING under its new claim (subscribers need
 * nothing: a claim makes no node READY). Sent after the claim commits, with
 * the process's other notices, and not awaited: a claim holds no NOTIFY lock
 * and its caller does not wait for the wake-up. The publisher keeps this
 * process's notices in order, so the claimer's finish notice comes after it.
 */
function announceClaim(ctx: TransitionContext, runId: string, row: NodeRow): void {
  ctx.publisher.post([
    {
      r: runId,
      rs: 'RUNNING',
      ch: [
        {
          n: row.name,
          v: row.version,
          s: 'RUNNING',
          a: row.attempt_count,
          st: ms(row.started_at),
          c: { id: row.claim_id!, ag: row.claim_agent ?? '', md: row.claim_metadata ?? {} },
        },
      ],
    },
  ]);
}

function claimedWith(
  runId: string,
  claimId: string,
  row: NodeRow,
  attempts: AttemptRow[],
  stale?: ReadonlySet<string>,
): ClaimedNode {
  const byNode = groupAttempts(attempts);
  const last = (n: string) => byNode.get(n)?.at(-1);
  return {
    runId,
    claimId,
    attempt: row.attempt_count + 1,
    orphan: row.previous_claim_id !== null,
    previousClaimId: row.previous_claim_id ?? undefined,
    node: toNodeState(row, byNode.get(row.name) ?? [], inputsOf(row, last, stale)),
  };
}

function attemptsFromJson(rows: AttemptJson[]): AttemptRow[] {
  return rows.map((a) => ({
    ...a,
    output: Buffer.from(a.output, 'base64'),
    started_at: a.started_at === null ? null : String(a.started_at),
    finished_at: String(a.finished_at),
  }));
}

/**
 * Rules 4 and 5, fenced by the claim: the finish_nodes function (migration
 * 12) in one round trip, batched with this process's concurrent finishes
 * (finishes.ts). The run's row lock, which serialises finishes within a
 * run, is held only while the statement runs and commits.
 */
export async function finishNode(ctx: TransitionContext, req: FinishRequest): Promise<void> {
  checkConclusion(req.conclusion);
  checkMetadata(req.metadata);
  checkStartedAt(req.startedAt);
  const result = await ctx.finishes.submit({
    runId: req.runId,
    node: req.node,
    claimId: req.claimId,
    conclusion: req.conclusion,
    metadata: JSON.stringify(req.metadata ?? {}),
    output: toBuffer(truncateOutput(req.output ?? new Uint8Array())),
    now: ctx.clock.now(),
    startedAt: req.startedAt ?? null,
  });
  // Recorded (the batch published its notices), or recorded by an earlier try of this call.
  if ('ok' in result || 'recorded' in result) return;
  if ('missing' in result)
    throw result.missing === 'run' ? new NotFoundError('run', req.runId) : nodeNotFound(req.runId, req.node);
  throw claimNotLive(req, result);
}

/**
 * Rule 20: claims given back, one statement (release_claim per claim, in run
 * order); the nodes released are announced READY with this process's notices.
 */
export async function releaseClaims(ctx: TransitionContext, claims: ClaimRef[]): Promise<boolean[]> {
  checkClaimRefs(claims);
  if (claims.length === 0) return [];
  const { rows } = await ctx.db.retrying('release', () =>
    ctx.db.query<{ i: number; notice: Notice | null }>('release', RELEASE_CLAIMS, [
      claims.map((c) => c.runId),
      claims.map((c) => c.node),
      claims.map((c) => c.claimId),
    ]),
  );
  const notices = rows.flatMap((r) => (r.notice ? [r.notice] : []));
  if (notices.length > 0) await ctx.publisher.publish(notices);
  const released: boolean[] = new Array(claims.length).fill(false);
  for (const r of rows) released[r.i - 1] = r.notice !== null;
  return released;
}

/**
 * Rule 6 (and 13: `timedOut` when its deadline cancels it). Returns false
 * when the run had already completed. Locks the run, then its unfinished
 * nodes, so no claim or finish can slip in between.
 */
export async function cancelRun(ctx: TransitionContext, runId: string, timedOut = false): Promise<boolean> {
  const now = ctx.clock.now();
  const notice = await ctx.db.retrying('cancel', () =>
    ctx.db.tx('cancel', async (c): Promise<Notice | undefined> => {
      const run = (
        await c.query<{ conclusion: string | null; past_deadline: boolean }>(
          `SELECT conclusion, coalesce(deadline_open <= adagio_now_ms(), false) AS past_deadline
           FROM runs WHERE id = $1 FOR NO KEY UPDATE`,
          [runId],
        )
      ).rows[0];
      if (!run) throw new NotFoundError('run', runId);
      if (run.conclusion) return undefined;
      // Rule 13, judged again under the lock: a run retried since the sweep read it runs on without a deadline.
      if (timedOut && !run.past_deadline) return undefined;
      const open = await c.query<{
        name: string;
        status: string;
        claim_id: string | null;
        claim_agent: string | null;
        started_at: string | null;
        attempt_count: number;
      }>(
        `SELECT name, status, claim_id, claim_agent, started_at, attempt_count
         FROM nodes WHERE run_id = $1 AND status <> 'COMPLETED' ORDER BY name FOR UPDATE`,
        [runId],
      );
      const running = open.rows.filter((n) => n.status === 'RUNNING' && n.claim_id);
      // Rule 6's attempt as the model decides it; the times (ms) and the streamed output are the store's.
      const cancelled = running.map((n) =>
        cancelledAttemptFields({ claimId: n.claim_id!, agentId: n.claim_agent ?? '' }),
      );
      if (running.length > 0)
        await c.query(
          `INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
           SELECT $1, x.node, x.n, x.conclusion, x.metadata,
             -- What the attempt streamed stays its output (live_outputs, migration 4).
             coalesce((SELECT lo.output FROM live_outputs lo WHERE lo.run_id = $1 AND lo.node = x.node), ''),
             x.claim_id, x.agent_id, x.started_at, $2
           FROM unnest($3::text[], $4::int[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::jsonb[])
             AS x(node, n, claim_id, agent_id, started_at, conclusion, metadata)`,
          [
            runId,
            now,
            running.map((n) => n.name),
            running.map((n) => n.attempt_count + 1),
            cancelled.map((a) => a.claimId),
            cancelled.map((a) => a.agentId),
            running.map((n) => n.started_at),
            cancelled.map((a) => a.conclusion),
            cancelled.map((a) => JSON.stringify(a.metadata)),
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
      const conclusion = conclusionOf({ cancelled: true, failed: false, timedOut });
      const notice: Notice = {
        r: runId,
        rs: 'COMPLETED',
        rc: conclusion,
        ch: done.rows.map((n) => ({
          n: n.name,
          v: n.version,
          s: 'COMPLETED',
          a: n.attempt_count,
          st: ms(n.started_at),
          ft: now,
        })),
      };
      if (running.length > 0) await c.query('DELETE FROM live_outputs WHERE run_id = $1', [runId]);
      await c.query(
        'UPDATE runs SET remaining = 0, cancelled = true, conclusion = $2, finished_at = $3 WHERE id = $1',
        [runId, conclusion, now],
      );
      return notice;
    }),
  );
  if (!notice) return false;
  await ctx.publisher.publish([notice]);
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
  await ctx.publisher.publish(notices);
  return count;
}
