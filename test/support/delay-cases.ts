import type { Backoff } from '../../src/model/types.js';

/**
 * Rule 5's retry delays as a table: model/rules.ts retryDelayMs and
 * PostgreSQL's retry_delay_ms are both held to it (test/model.test.ts,
 * test/postgres/timing.test.ts). No jitter here: `want` is exact.
 */
export interface DelayCase {
  backoff: Backoff;
  retry: number;
  want: number;
}

const WEEK_MS = 7 * 24 * 3_600_000;

export const DELAY_CASES: readonly DelayCase[] = [
  { backoff: { initial: '1s' }, retry: 1, want: 1_000 },
  { backoff: { initial: '1s' }, retry: 7, want: 1_000 },
  { backoff: { initial: '1s', factor: 2 }, retry: 1, want: 1_000 },
  { backoff: { initial: '1s', factor: 2 }, retry: 2, want: 2_000 },
  { backoff: { initial: '1s', factor: 2 }, retry: 4, want: 8_000 },
  { backoff: { initial: '1s', factor: 2, max: '5s' }, retry: 3, want: 4_000 },
  { backoff: { initial: '1s', factor: 2, max: '5s' }, retry: 4, want: 5_000 },
  { backoff: { initial: '1s', factor: 2, max: '5s' }, retry: 40, want: 5_000 },
  { backoff: { initial: '250ms', factor: 1.5 }, retry: 3, want: 562 },
  { backoff: { initial: '0' }, retry: 3, want: 0 },
  { backoff: { initial: '0', factor: 10 }, retry: 999, want: 0 },
  { backoff: { initial: '1m30s', factor: 3, max: '1h' }, retry: 3, want: 810_000 },
  // No max: a large factor saturates at a week instead of overflowing.
  { backoff: { initial: '1s', factor: 10 }, retry: 999, want: WEEK_MS },
];
