import type { FinishOutcome, NodeSpec, RetryCounts } from '../../src/model/index.js';

/**
 * Rule 5's table: one node's retry policy, its attempts so far, the finish's
 * conclusion, and the outcome the rulebook (src/model finishOutcome) gives.
 * Run through the model (test/model.test.ts) and through PostgreSQL's
 * finish_nodes (test/postgres/finish-rules.test.ts), so the SQL copy of the
 * rule cannot drift from the model's.
 */
export interface FinishCase {
  retry: NodeSpec['retry'];
  prior: RetryCounts;
  conclusion: 'SUCCESS' | 'FAIL' | 'ERROR';
  outcome: FinishOutcome;
}

export const FINISH_CASES: readonly FinishCase[] = [
  { retry: {}, prior: { fail: 0, error: 0 }, conclusion: 'SUCCESS', outcome: 'SUCCEEDED' },
  {
    retry: { fail: { maxAttempts: 3 } },
    prior: { fail: 2, error: 0 },
    conclusion: 'SUCCESS',
    outcome: 'SUCCEEDED',
  },
  { retry: {}, prior: { fail: 0, error: 0 }, conclusion: 'FAIL', outcome: 'FAILED' },
  { retry: {}, prior: { fail: 0, error: 0 }, conclusion: 'ERROR', outcome: 'FAILED' },
  { retry: { fail: { maxAttempts: 3 } }, prior: { fail: 0, error: 0 }, conclusion: 'FAIL', outcome: 'RETRY' },
  { retry: { fail: { maxAttempts: 3 } }, prior: { fail: 1, error: 0 }, conclusion: 'FAIL', outcome: 'RETRY' },
  {
    retry: { fail: { maxAttempts: 3 } },
    prior: { fail: 2, error: 0 },
    conclusion: 'FAIL',
    outcome: 'FAILED',
  },
  // Counts attempts of the same conclusion only.
  { retry: { fail: { maxAttempts: 3 } }, prior: { fail: 1, error: 5 }, conclusion: 'FAIL', outcome: 'RETRY' },
  {
    retry: { fail: { maxAttempts: 3 } },
    prior: { fail: 0, error: 0 },
    conclusion: 'ERROR',
    outcome: 'FAILED',
  },
  {
    retry: { error: { maxAttempts: 2 } },
    prior: { fail: 0, error: 0 },
    conclusion: 'ERROR',
    outcome: 'RETRY',
  },
  {
    retry: { error: { maxAttempts: 2 } },
    prior: { fail: 0, error: 1 },
    conclusion: 'ERROR',
    outcome: 'FAILED',
  },
  {
    retry: { error: { maxAttempts: 2 } },
    prior: { fail: 4, error: 0 },
    conclusion: 'FAIL',
    outcome: 'FAILED',
  },
  // max_attempts 0 and 1 both mean no retry.
  {
    retry: { fail: { maxAttempts: 1 } },
    prior: { fail: 0, error: 0 },
    conclusion: 'FAIL',
    outcome: 'FAILED',
  },
  {
    retry: { fail: { maxAttempts: 0 } },
    prior: { fail: 0, error: 0 },
    conclusion: 'FAIL',
    outcome: 'FAILED',
  },
  {
    retry: { fail: { maxAttempts: 2 }, error: { maxAttempts: 2 } },
    prior: { fail: 1, error: 0 },
    conclusion: 'ERROR',
    outcome: 'RETRY',
  },
];
