import {
  type Attempt,
  type AttemptConclusion,
  type Labels,
  type Metadata,
  type NodeSpec,
  type NodeState,
  type NodeStatus,
  type Params,
  type RunConclusion,
  type RunIdentity,
  type RunStatus,
  rfc3339,
  runStatusOf,
} from '../../model/index.js';

/** Row shapes as the pg client returns them (bigint arrives as string) and their domain forms. */

export const NODE_COLUMNS = `name, idx, runtime, spec, upstream, status, attempt_count, claim_id, claim_agent,
  claim_metadata, orphaned, previous_claim_id, started_at, finished_at, version, ready_at, attempts_before_retry`;

export interface NodeRow {
  name: string;
  idx: number;
  runtime: string;
  spec: NodeSpec;
  upstream: string[];
  status: NodeStatus;
  attempt_count: number;
  claim_id: string | null;
  claim_agent: string | null;
  claim_metadata: Metadata | null;
  orphaned: boolean;
  previous_claim_id: string | null;
  started_at: string | null;
  finished_at: string | null;
  version: number;
  /** When a READY node waiting out its retry delay becomes claimable (ms); absent from claim_nodes rows. */
  ready_at?: string | null;
  /** Absent from claim_nodes' rows. */
  attempts_before_retry?: number;
}

export const ATTEMPT_COLUMNS =
  'node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at';

export interface AttemptRow {
  node: string;
  n: number;
  conclusion: AttemptConclusion;
  metadata: Metadata;
  output: Buffer;
  claim_id: string;
  agent_id: string;
  started_at: string | null;
  finished_at: string;
}

export interface RunRow {
  id: string;
  created_at: string;
  node_count: number;
  remaining: number;
  cancelled: boolean;
  conclusion: RunConclusion | null;
  finished_at: string | null;
  /** When its deadline passes (rule 13), ms; null without one. */
  deadline_at: string | null;
}

export const RUN_COLUMNS =
  'id, created_at, node_count, remaining, cancelled, conclusion, finished_at, deadline_at';

/** A run's identity (rule 17), read by inspect and lists only: claims and finishes never need it. */
export const IDENTITY_COLUMNS = 'name, labels, workflow, workflow_version, params, request_id';

export interface IdentityRow {
  name: string | null;
  labels: Labels | null;
  workflow: string | null;
  workflow_version: number | null;
  params: Params | null;
  request_id: string | null;
}

/** The identity fields a run carries, absent ones left out. */
export function identityOf(r: IdentityRow): RunIdentity {
  const out: RunIdentity = {};
  if (r.name !== null) out.name = r.name;
  if (r.labels !== null) out.labels = r.labels;
  if (r.workflow !== null) out.workflow = r.workflow;
  if (r.workflow_version !== null) out.workflowVersion = r.workflow_version;
  if (r.params !== null) out.params = r.params;
  if (r.request_id !== null) out.requestId = r.request_id;
  return out;
}

/** A copy that is a plain Uint8Array (pg hands out Buffers, often views of a shared slab). */
export function bytes(b: Buffer | null | undefined): Uint8Array {
  return b ? new Uint8Array(b) : new Uint8Array();
}

/** The form pg sends as bytea. */
export function toBuffer(u: Uint8Array | undefined): Buffer {
  if (!u) return Buffer.alloc(0);
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

export const time = (ms: string | number | null): string =>
  ms === null || ms === '' ? '' : rfc3339(Number(ms));

export function toAttempt(row: AttemptRow): Attempt {
  return {
    conclusion: row.conclusion,
    metadata: row.metadata,
    output: bytes(row.output),
    claimId: row.claim_id,
    agentId: row.agent_id,
    startedAt: time(row.started_at),
    finishedAt: time(row.finished_at),
  };
}

/** Attempt rows grouped by node, each list in attempt order. */
export function groupAttempts(rows: AttemptRow[]): Map<string, Attempt[]> {
  const sorted = [...rows].sort((a, b) => (a.node === b.node ? a.n - b.n : a.node < b.node ? -1 : 1));
  const out = new Map<string, Attempt[]>();
  for (const r of sorted) {
    let list = out.get(r.node);
    if (!list) {
      list = [];
      out.set(r.node, list);
    }
    list.push(toAttempt(r));
  }
  return out;
}

/**
 * Inputs are the upstream nodes' last successful outputs at claim time. An
 * upstream node is COMPLETED with SUCCESS before any dependent is claimed and
 * never changes afterwards, so they are derived on read instead of copied.
 */
export function inputsOf(
  row: NodeRow,
  lastAttempt: (node: string) => Pick<Attempt, 'conclusion' | 'output'> | undefined,
  /** Upstream nodes whose last attempt is from before a retry last put them back (staleUpstream). */
  stale: ReadonlySet<string> = NONE,
): Record<string, Uint8Array> {
  const inputs: Record<string, Uint8Array> = {};
  if (row.started_at === null) return inputs;
  // From upstream nodes that succeeded only (a trigger may run a node below a failure), since a retry last
  // put them back: one put back that then completed unreached keeps its old SUCCESS, which is no input.
  for (const up of row.upstream) {
    const last = lastAttempt(up);
    if (last?.conclusion === 'SUCCESS' && !stale.has(up)) inputs[up] = last.output;
  }
  return inputs;
}

const NONE: ReadonlySet<string> = new Set();

/**
 * Whether a node's inputs may miss a stale upstream SUCCESS unless told
 * (staleUpstream): only a trigger other than all_success runs a node with an
 * upstream that counted as neither, which is how a stale SUCCESS counts.
 */
export function mayHaveStaleUpstream(row: Pick<NodeRow, 'spec' | 'upstream'>): boolean {
  const rule = row.spec.trigger ?? 'all_success';
  return rule !== 'all_success' && row.upstream.length > 0;
}

/** Of these node rows, those completed with no attempt since a retry last put them back. */
export function staleUpstream(
  rows: Iterable<Pick<NodeRow, 'name' | 'attempt_count' | 'attempts_before_retry'>>,
): Set<string> {
  const stale = new Set<string>();
  for (const r of rows)
    if ((r.attempts_before_retry ?? 0) > 0 && r.attempt_count <= (r.attempts_before_retry ?? 0))
      stale.add(r.name);
  return stale;
}

export function toNodeState(
  row: NodeRow,
  attempts: Attempt[],
  inputs: Record<string, Uint8Array>,
  live?: { attempt: number; output: Uint8Array },
): NodeState {
  const streaming = row.status === 'RUNNING' && live?.attempt === row.attempt_count + 1;
  return {
    spec: row.spec,
    status: row.status,
    attempts,
    startedAt: time(row.started_at),
    finishedAt: time(row.finished_at),
    inputs,
    claim: row.claim_id
      ? {
          id: row.claim_id,
          agentId: row.claim_agent ?? '',
          metadata: row.claim_metadata ?? {},
          orphaned: row.orphaned,
        }
      : undefined,
    liveOutput: streaming && live.output.byteLength > 0 ? live.output : undefined,
    ...(row.status === 'READY' && row.ready_at ? { nextAttemptAt: time(row.ready_at) } : {}),
    ...(row.attempts_before_retry ? { attemptsBeforeRetry: row.attempts_before_retry } : {}),
  };
}

/** Rule 7 from the run row plus whether any node is RUNNING now. */
export function statusOf(run: Pick<RunRow, 'remaining' | 'node_count'>, anyRunning: boolean): RunStatus {
  return runStatusOf({
    total: run.node_count,
    completed: run.node_count - run.remaining,
    running: anyRunning ? 1 : 0,
  });
}
