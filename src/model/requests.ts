import { InvalidArgumentError, InvalidGraphError } from '../protocol/errors.js';
import type { GraphSpec, Metadata } from './types.js';
import { metadataProblem, validateGraph } from './validate.js';

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
}

/** Claim and finish metadata must be storable text in every backend (see textProblem). */
export function checkMetadata(metadata: Metadata | undefined): void {
  const problem = metadata && metadataProblem(metadata);
  if (problem) throw new InvalidArgumentError(problem);
}

/** A finish's conclusion; callers across a process boundary may send anything. */
export function checkConclusion(conclusion: string): asserts conclusion is FinishConclusion {
  if (!FINISH_CONCLUSIONS.includes(conclusion))
    throw new InvalidArgumentError(
      `conclusion must be SUCCESS, FAIL or ERROR, got ${JSON.stringify(conclusion)}`,
    );
}
