import type pg from 'pg';
import {
  checkListLimit,
  checkRunFilter,
  type Edge,
  emptyNodeCounts,
  failedNodesSummary,
  LIMITS,
  type NodeState,
  type NodeStatus,
  type Run,
  type RunConclusion,
  type RunFilter,
  type RunStatus,
  type RunSummary,
  rfc3339,
  runFinishedAt,
  type Stats,
} from '../../model/index.js';
import { decodeCursor, encodeCursor } from '../../model/requests.js';
import { type ClaimRef, type ListRunsQuery, NotFoundError, type RunPage } from '../../protocol/index.js';
import type { Db } from './db.js';
import { readLiveOutputs } from './output.js';
import {
  ATTEMPT_COLUMNS,
  type AttemptRow,
  groupAttempts,
  IDENTITY_COLUMNS,
  type IdentityRow,
  identityOf,
  inputsOf,
  mayHaveStaleUpstream,
  NODE_COLUMNS,
  type NodeRow,
  RUN_COLUMNS,
  type RunRow,
  staleUpstream,
  statusOf,
  toNodeState,
} from './rows.js';
import {
  CLAIMS_HELD,
  FAILED_NODES,
  RUN_BY_REQUEST,
  RUN_HAS_RUNNING_NODE,
  STATS,
  UPSTREAM_RETRY_COUNTS,
} from './sql.js';

/** Everything that only reads: inspect, the watcher's re-reads, listing and stats. */

export interface LoadedRun {
  run: RunRow & IdentityRow & { edges: Edge[] };
  nodes: NodeState[];
  /** Each node's row version (see notices.ts). */
  versions: Map<string, number>;
  status: RunStatus;
  conclusion?: RunConclusion;
}

/**
 * Reads a run, or only some of its nodes, from one snapshot (REPEATABLE READ)
 * so the nodes, their attempts and the run's status agree with each other.
 */
export async function loadRun(db: Db, runId: string, names?: string[]): Promise<LoadedRun> {
  return db.tx(
    'inspect',
    async (c) => {
      const runs = await c.query<RunRow & IdentityRow & { edges: Edge[] }>(
        `SELECT ${RUN_COLUMNS}, ${IDENTITY_COLUMNS}, edges FROM runs WHERE id = $1`,
        [runId],
      );
      const run = runs.rows[0];
      if (!run) throw new NotFoundError('run', runId);
      const nodeRows = names
        ? await c.query<NodeRow>(
            `SELECT ${NODE_COLUMNS} FROM nodes WHERE run_id = $1 AND name = ANY($2) ORDER BY idx`,
            [runId, names],
          )
        : await c.query<NodeRow>(`SELECT ${NODE_COLUMNS} FROM nodes WHERE run_id = $1 ORDER BY idx`, [runId]);
      const attempts = await readAttempts(c, runId, names ? withUpstream(nodeRows.rows) : undefined);
      const byNode = groupAttempts(attempts);
      const lastOutput = (n: string) => {
        const list = byNode.get(n);
        return list?.[list.length - 1];
      };
      const live = await readLiveOutputs(c, runId, names);
      // A subset's upstream rows may be missing: what tells their stale SUCCESS is read for those that matter.
      const known = new Set(nodeRows.rows.map((r) => r.name));
      const missing = new Set<string>();
      for (const r of nodeRows.rows)
        if (mayHaveStaleUpstream(r)) for (const u of r.upstream) if (!known.has(u)) missing.add(u);
      const upstreamRows =
        missing.size > 0 ? (await c.query<NodeRow>(UPSTREAM_RETRY_COUNTS, [runId, [...missing]])).rows : [];
      const stale = staleUpstream([...nodeRows.rows, ...upstreamRows]);
      const nodes = nodeRows.rows.map((row) =>
        toNodeState(row, byNode.get(row.name) ?? [], inputsOf(row, lastOutput, stale), live.get(row.name)),
      );
      let anyRunning: boolean;
      if (!names) anyRunning = nodes.some((n) => n.status === 'RUNNING');
      else if (run.remaining < run.node_count || nodes.some((n) => n.status === 'RUNNING')) anyRunning = true;
      else {
        const r = await c.query(RUN_HAS_RUNNING_NODE, [runId]);
        anyRunning = r.rowCount! > 0;
      }
      const status = statusOf(run, anyRunning);
      const versions = new Map(nodeRows.rows.map((r) => [r.name, r.version]));
      return { run, nodes, versions, status, conclusion: run.conclusion ?? undefined };
    },
    'REPEATABLE READ READ ONLY',
  );
}

function withUpstream(rows: NodeRow[]): string[] {
  const names = new Set<string>();
  for (const r of rows) {
    names.add(r.name);
    if (r.started_at !== null) for (const u of r.upstream) names.add(u);
  }
  return [...names];
}

async function readAttempts(c: pg.ClientBase, runId: string, names?: string[]): Promise<AttemptRow[]> {
  if (names && names.length === 0) return [];
  const { rows } = names
    ? await c.query<AttemptRow>(
        `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 AND node = ANY($2)`,
        [runId, names],
      )
    : await c.query<AttemptRow>(`SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1`, [runId]);
  return rows;
}

export async function inspect(db: Db, runId: string): Promise<Run> {
  const { run, nodes, status, conclusion } = await loadRun(db, runId);
  return {
    id: run.id,
    createdAt: rfc3339(Number(run.created_at)),
    nodes,
    edges: run.edges,
    status,
    conclusion,
    finishedAt: finishedAtOf(run, nodes),
    ...(run.deadline_at ? { deadlineAt: rfc3339(Number(run.deadline_at)) } : {}),
    ...identityOf(run),
  };
}

/** The stored completion time; derived from the nodes for runs completed before migration 4. */
export function finishedAtOf(run: RunRow, nodes: NodeState[]): string | undefined {
  if (run.finished_at) return rfc3339(Number(run.finished_at));
  return run.remaining === 0 ? runFinishedAt(nodes) || undefined : undefined;
}

export async function listRuns(db: Db, query: ListRunsQuery): Promise<RunPage> {
  const limit = checkListLimit(query.limit);
  checkRunFilter(query);
  const where: string[] = [];
  const values: unknown[] = [];
  if (query.since !== undefined) {
    values.push(Math.floor(query.since));
    where.push(`created_at >= $${values.length}`);
  }
  if (query.until !== undefined) {
    values.push(Math.floor(query.until));
    where.push(`created_at < $${values.length}`);
  }
  if (query.cursor) {
    const c = decodeCursor(query.cursor);
    values.push(c.createdAtMs, c.runId);
    where.push(`(created_at, id) < ($${values.length - 1}, $${values.length})`);
  }
  filterClauses(query, values, where);
  values.push(limit + 1);
  const { rows } = await db.query<RunRow & IdentityRow & { failed: boolean }>(
    'list runs',
    `SELECT ${RUN_COLUMNS}, ${IDENTITY_COLUMNS}, failed FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY created_at DESC, id DESC LIMIT $${values.length}`,
    values,
  );
  const page = rows.slice(0, limit);
  // Counts of unfinished runs come from their nodes; a finished run's are all COMPLETED.
  const active = page.filter((r) => r.remaining > 0).map((r) => r.id);
  const counts = new Map<string, Record<NodeStatus, number>>();
  if (active.length > 0) {
    const agg = await db.query<{ run_id: string; status: NodeStatus; n: number }>(
      'list runs',
      'SELECT run_id, status, count(*)::int AS n FROM nodes WHERE run_id = ANY($1) GROUP BY run_id, status',
      [active],
    );
    for (const a of agg.rows) {
      let c = counts.get(a.run_id);
      if (!c) {
        c = emptyNodeCounts();
        counts.set(a.run_id, c);
      }
      c[a.status] = a.n;
    }
  }
  const failedNames = await failedNodesOf(
    db,
    page.filter((r) => r.failed).map((r) => r.id),
  );
  const runs: RunSummary[] = page.map((r) => {
    const nodeCounts = counts.get(r.id) ?? { ...emptyNodeCounts(), COMPLETED: r.node_count };
    if (r.remaining === 0) nodeCounts.COMPLETED = r.node_count;
    return {
      id: r.id,
      createdAt: rfc3339(Number(r.created_at)),
      status: statusOf(r, nodeCounts.RUNNING > 0),
      conclusion: r.conclusion ?? undefined,
      finishedAt: r.finished_at ? rfc3339(Number(r.finished_at)) : undefined,
      nodeCounts,
      ...failedNodesSummary(failedNames.get(r.id)?.names ?? [], failedNames.get(r.id)?.total ?? 0),
      ...identityOf({ ...r, params: null }),
    };
  });
  const last = page[page.length - 1];
  return {
    runs,
    nextCursor: rows.length > limit && last ? encodeCursor(Number(last.created_at), last.id) : undefined,
  };
}

/** Rule 19: the first failed node names of each run and how many failed (runs.failed says which runs to ask about). */
async function failedNodesOf(
  db: Db,
  runIds: string[],
): Promise<Map<string, { names: string[]; total: number }>> {
  const out = new Map<string, { names: string[]; total: number }>();
  if (runIds.length === 0) return out;
  const { rows } = await db.query<{ run_id: string; node: string; total: number }>(
    'list runs',
    FAILED_NODES,
    [runIds, LIMITS.maxListedFailedNodes],
  );
  for (const r of rows) {
    const f = out.get(r.run_id) ?? { names: [], total: r.total };
    f.names.push(r.node);
    out.set(r.run_id, f);
  }
  return out;
}

/**
 * Rule 17's filters as SQL, each value a parameter: the workflow and labels
 * through their indexes, the status as rule 7 derives it (COMPLETED when no
 * node remains, WAITING while none has completed or runs), the search as an
 * id prefix or name text, both ignoring case.
 */
function filterClauses(f: RunFilter, values: unknown[], where: string[]): void {
  const param = (v: unknown) => {
    values.push(v);
    return `$${values.length}`;
  };
  if (f.workflow !== undefined) where.push(`workflow = ${param(f.workflow)}`);
  if (f.labels && Object.keys(f.labels).length > 0)
    where.push(`labels @> ${param(JSON.stringify(f.labels))}::jsonb`);
  const running = `EXISTS (SELECT 1 FROM nodes WHERE run_id = runs.id AND status = 'RUNNING')`;
  if (f.status === 'COMPLETED') where.push('remaining = 0');
  else if (f.status === 'WAITING') where.push(`remaining = node_count AND remaining > 0 AND NOT ${running}`);
  else if (f.status === 'RUNNING') where.push(`remaining > 0 AND (remaining < node_count OR ${running})`);
  if (f.conclusion !== undefined) where.push(`conclusion = ${param(f.conclusion)}`);
  if (f.search) {
    const q = param(f.search.toLowerCase());
    where.push(`(starts_with(lower(id), ${q}) OR strpos(lower(coalesce(name, '')), ${q}) > 0)`);
  }
}

/**
 * Unfinished nodes are counted through the partial indexes (the hot set);
 * totals come from the sharded counters, so stats cost does not grow with
 * history.
 */
export async function stats(db: Db): Promise<Stats> {
  const { rows } = await db.query<{ runs: string; nodes: string; w: string; r: string; ru: string }>(
    'stats',
    STATS,
  );
  const s = rows[0]!;
  const counts = emptyNodeCounts();
  counts.WAITING = Number(s.w);
  counts.READY = Number(s.r);
  counts.RUNNING = Number(s.ru);
  counts.COMPLETED = Number(s.nodes) - counts.WAITING - counts.READY - counts.RUNNING;
  return { runCount: Number(s.runs), nodeCounts: counts };
}

/** Which claims still hold their node: RUNNING under that claim id, not orphaned (one query for all). */
export async function claimsHeld(db: Db, claims: ClaimRef[]): Promise<boolean[]> {
  if (claims.length === 0) return [];
  const { rows } = await db.retrying('claims held', () =>
    db.query<{ held: boolean }>(
      'claims held',
      CLAIMS_HELD,
      [claims.map((c) => c.runId), claims.map((c) => c.node), claims.map((c) => c.claimId)],
      { prepare: 'adagio_claims_held' },
    ),
  );
  return rows.map((r) => r.held);
}

/** The run a start with this request id created, while it is kept (its own id included). */
export async function runByRequest(db: Db, requestId: string): Promise<{ id: string; run: Run } | undefined> {
  const { rows } = await db.retrying('start', () =>
    db.query<{ id: string }>('start', RUN_BY_REQUEST, [requestId]),
  );
  const id = rows[0]?.id;
  if (id === undefined) return undefined;
  try {
    return { id, run: await db.retrying('start', () => inspect(db, id)) };
  } catch (e) {
    if (e instanceof NotFoundError) return undefined;
    throw e;
  }
}
