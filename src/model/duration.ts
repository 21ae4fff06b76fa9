/**
 * Durations as people write them in graph files: `100ms`, `1.5s`, `2m`, `1h`,
 * and sums like `1h30m`. A bare number is refused (except `0`) because its
 * unit would be a guess.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const PART = /(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)/y;

export class DurationError extends Error {}

/** Milliseconds (possibly fractional) for a duration string; DurationError naming the problem otherwise. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (s === '0') return 0;
  if (s === '') throw new DurationError('empty duration');
  PART.lastIndex = 0;
  let total = 0;
  let pos = 0;
  while (pos < s.length) {
    PART.lastIndex = pos;
    const m = PART.exec(s);
    if (!m)
      throw new DurationError(
        `"${text}" is not a duration (write a number and a unit: ms, s, m or h, e.g. "1.5s" or "2m")`,
      );
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    pos = PART.lastIndex;
  }
  if (!Number.isFinite(total)) throw new DurationError(`"${text}" is too long a duration`);
  return total;
}

/** A short human form of a duration in ms: `250ms`, `1.5s`, `2m`, `1h30m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${Number((ms / 1000).toFixed(3))}s`;
  let rest = Math.round(ms / 1000);
  const h = Math.floor(rest / 3600);
  rest -= h * 3600;
  const m = Math.floor(rest / 60);
  const sec = rest - m * 60;
  return `${h ? `${h}h` : ''}${m ? `${m}m` : ''}${sec ? `${sec}s` : ''}`;
}

/** Node's timers take at most 2^31 - 1 ms (about 24.8 days): a longer delay fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay setTimeout keeps: `ms` capped at MAX_TIMER_MS. */
export function timerDelay(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}
