import { LIMITS } from '../model/limits.js';
import { textProblem } from '../model/validate.js';
import { InvalidArgumentError } from './errors.js';
import type { AgentRegistration } from './repository.js';

/**
 * Request checks at the protocol boundary: what a caller names (ids, agent
 * registrations, lease TTLs, list cursors) is refused here with an
 * InvalidArgumentError before any backend sees it, so every backend answers
 * the same malformed input the same way (PostgreSQL would refuse a NUL with
 * an internal error, etcd a TTL past its maximum, memory would accept both).
 */

/** An id a caller sent (run, agent, lease, claim id): non-empty storable text within LIMITS.maxIdBytes. */
export function checkId(what: string, id: string): void {
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError(`${what} is required`);
  const problem = textProblem(id);
  if (problem) throw new InvalidArgumentError(`${what} ${problem}`);
  const bytes = Buffer.byteLength(id);
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

export function checkAgentRegistration(agent: AgentRegistration): void {
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

/** A lease TTL in ms: positive and at most LIMITS.maxLeaseTtlMs (every store can hold it). */
export function checkLeaseTtl(ttlMs: number): void {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) throw new InvalidArgumentError('lease TTL must be positive');
  if (ttlMs > LIMITS.maxLeaseTtlMs)
    throw new InvalidArgumentError(`lease TTL is ${ttlMs} ms; the limit is ${LIMITS.maxLeaseTtlMs} ms`);
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
