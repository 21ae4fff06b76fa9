import { InvalidArgumentError, InvalidGraphError } from '../protocol/errors.js';
import { LIMITS } from './limits.js';
import type { GraphSpec, Metadata } from './types.js';
import { metadataProblem, metadataSizeProblem, textProblem, validateGraph } from './validate.js';

/**
 * Requests checked once, at the protocol boundary: every backend calls these
 * before it touches its store, so each refuses the same input with the same
 * words (and the API, CLI and remote client see one message per mistake).
 * Checks of malformed input (ids, ranges) belong here too.
 */

export const DEFAULT_LEASE_TTL_MS = 10_000;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;

/** Finish takes only these conclusions (CANCELLED is cancel's). */
export type FinishConclusion = 'SUCCESS' | 'FAIL' | 'ERROR';
const FINISH_CONCLUSIONS: readonly string[] = ['SUCCESS', 'FAIL', 'ERROR'];

/** A start's graph must satisfy rule 1; InvalidGraphError lists every problem. */
export function checkGraph(spec: GraphSpec): void {
  const problems = validateGraph(spec);
  if (problems.length > 0) throw new InvalidGraphError(problems);
}

/** A list's page size: DEFAULT_LIST_LIMIT when absent, else a whole number from 1 to MAX_LIST_LIMIT. */
export function checkListLimit(limit: number | undefined): number {
  const n = limit ?? DEFAULT_LIST_LIMIT;
  if (!Number.isInteger(n) || n < 1 || n > MAX_LIST_LIMIT)
    throw new InvalidArgumentError(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
  return n;
}

/** A lease's time to live, in ms. */
export function checkLeaseTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new InvalidArgumentError('lease TTL must be positive');
  if (ttlMs > LIMITS.maxLeaseTtlMs)
    throw new InvalidArgumentError(`lease TTL is ${ttlMs} ms; the limit is ${LIMITS.maxLeaseTtlMs} ms`);
}

/** Claim and finish metadata must be storable text in every backend (see textProblem), and within the size limit. */
export function checkMetadata(metadata: Metadata | undefined): void {
  const problem = metadata && (metadataProblem(metadata) ?? metadataSizeProblem(metadata));
  if (problem) throw new InvalidArgumentError(problem);
}

/** A finish's conclusion; callers across a process boundary may send anything. */
export function checkConclusion(conclusion: string): asserts conclusion is FinishConclusion {
  if (!FINISH_CONCLUSIONS.includes(conclusion))
    throw new InvalidArgumentError(
      `conclusion must be SUCCESS, FAIL or ERROR, got ${JSON.stringify(conclusion)}`,
    );
}

/** A finish's reported start (rule 20): absent, or ms since the epoch. */
export function checkStartedAt(ms: number | undefined): void {
  if (ms === undefined) return;
  if (!Number.isSafeInteger(ms) || ms < 0)
    throw new InvalidArgumentError(`startedAt must be ms since the epoch, got ${JSON.stringify(ms)}`);
}

/** At most this many nodes one finish hands off (rule 21): a bound on one transition's work. */
export const MAX_HAND_OFF = 64;

/**
 * A finish's hand-off offer (rule 21): a lease, up to MAX_HAND_OFF agent ids
 * and the runtimes it runs. Returned as given, for the caller to use checked.
 */
export function checkHandOff<T extends { leaseId: string; agentIds: string[]; runtimes: string[] }>(h: T): T {
  if (typeof h !== 'object' || h === null) throw new InvalidArgumentError('handOff must be an object');
  if (typeof h.leaseId !== 'string' || h.leaseId === '')
    throw new InvalidArgumentError('handOff.leaseId must name a lease');
  if (!Array.isArray(h.agentIds) || h.agentIds.length > MAX_HAND_OFF)
    throw new InvalidArgumentError(`handOff.agentIds must be a list of at most ${MAX_HAND_OFF} agent ids`);
  if (!Array.isArray(h.runtimes)) throw new InvalidArgumentError('handOff.runtimes must be a list');
  for (const v of [...h.agentIds, ...h.runtimes])
    if (typeof v !== 'string' || v === '')
      throw new InvalidArgumentError(
        `handOff agent ids and runtimes must be names, got ${JSON.stringify(v)}`,
      );
  return h;
}

/** Claims given back (rule 20): each names a run, a node and a claim id. */
export function checkClaimRefs(claims: readonly { runId: string; node: string; claimId: string }[]): void {
  if (!Array.isArray(claims)) throw new InvalidArgumentError('claims must be a list');
  for (const c of claims) {
    checkRunId(c?.runId);
    checkNodeName(c?.node);
    checkId('claim id', c?.claimId);
  }
}

// ---- malformed input: ids, names, agent registrations, list cursors (every store refuses them alike)

/** An id a caller sent (run, agent, lease, claim id): non-empty storable text within LIMITS.maxIdBytes. */
export function checkId(what: string, id: string): void {
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError(`${what} is required`);
  const problem = textProblem(id);
  if (problem) throw new InvalidArgumentError(`${what} ${problem}`);
  // At most 3 UTF-8 bytes per UTF-16 unit: a short id needs no count (claim and finish check ids on every call).
  const bytes = id.length * 3 <= LIMITS.maxIdBytes ? 0 : Buffer.byteLength(id);
  if (bytes > LIMITS.maxIdBytes)
    throw new InvalidArgumentError(`${what} is ${bytes} bytes; the limit is ${LIMITS.maxIdBytes}`);
}

export const checkRunId = (id: string): void => checkId('run id', id);

/** A node name a caller sent (claim, finish): storable text within the name limit. */
export function checkNodeName(name: string): void {
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('node name is required');
  const problem = textProblem(name);
  if (problem) throw new InvalidArgumentError(`node name ${problem}`);
  if (name.length > LIMITS.maxNameLength)
    throw new InvalidArgumentError(`node name is longer than ${LIMITS.maxNameLength} characters`);
}

/** An agent registration: its id, hostname and runtimes as storable text within the limits. */
export function checkAgentRegistration(agent: {
  id: string;
  hostname?: string;
  runtimes: readonly { name: string }[];
}): void {
  checkId('agent id', agent.id);
  if (agent.hostname !== undefined && agent.hostname !== '') checkId('agent hostname', agent.hostname);
  if (!Array.isArray(agent.runtimes)) throw new InvalidArgumentError('agent runtimes must be a list');
  if (agent.runtimes.length > LIMITS.maxAgentRuntimes)
    throw new InvalidArgumentError(
      `agent registers ${agent.runtimes.length} runtimes; the limit is ${LIMITS.maxAgentRuntimes}`,
    );
  for (const r of agent.runtimes) {
    const name = r?.name;
    if (typeof name !== 'string' || name === '')
      throw new InvalidArgumentError('agent runtime name is empty');
    const problem = textProblem(name);
    if (problem) throw new InvalidArgumentError(`agent runtime name ${problem}`);
    if (name.length > LIMITS.maxNameLength)
      throw new InvalidArgumentError(`agent runtime name is longer than ${LIMITS.maxNameLength} characters`);
  }
}

/**
 * List cursors, one format for every backend: "<created_at ms>.<run id>" of
 * the last run on the previous page. Opaque to callers; anything else is refused.
 */
export interface ListCursor {
  createdAtMs: number;
  runId: string;
}

export function encodeCursor(createdAtMs: number, runId: string): string {
  return `${createdAtMs}.${runId}`;
}

export function decodeCursor(cursor: string): ListCursor {
  const m = /^(\d{1,15})\.(.+)$/s.exec(cursor);
  const runId = m?.[2] ?? '';
  if (!m || textProblem(runId) || Buffer.byteLength(runId) > LIMITS.maxIdBytes)
    throw new InvalidArgumentError(
      `malformed cursor ${JSON.stringify(cursor.slice(0, 100))}: pass a next_cursor from a previous page`,
    );
  return { createdAtMs: Number(m[1]), runId };
}

/** A retry's node names (rule 15): optional; each a node name (planRetry refuses names not in the run). */
export function checkRetryNodes(nodes: readonly string[] | undefined): void {
  if (nodes === undefined) return;
  if (!Array.isArray(nodes)) throw new InvalidArgumentError('retry nodes must be a list of node names');
  for (const n of nodes)
    if (typeof n !== 'string' || n.length === 0 || n.length > LIMITS.maxNameLength || textProblem(n))
      throw new InvalidArgumentError(`retry node name ${JSON.stringify(n)} is not a valid node name`);
}
