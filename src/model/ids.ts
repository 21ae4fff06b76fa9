import { randomFillSync } from 'node:crypto';
import { monotonicFactory } from 'ulid';

/** Time source, injectable so tests are deterministic. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(private ms = Date.UTC(2026, 0, 1)) {}
  now(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}

/** Id source: ULIDs, time-sortable, monotonic within one millisecond. */
export interface IdSource {
  next(at: number): string;
}

export function ulidSource(): IdSource {
  const factory = monotonicFactory(bufferedRandom());
  return { next: (at) => factory(at) };
}

/** Crypto-strength floats in [0, 1) drawn from a refilled buffer: one syscall per 1,024 ids, not one per character. */
function bufferedRandom(): () => number {
  const buf = new Uint32Array(16 * 1024);
  let i = buf.length;
  return () => {
    if (i === buf.length) {
      randomFillSync(buf);
      i = 0;
    }
    return buf[i++]! / 0x1_0000_0000;
  };
}

/** Deterministic ids for tests: a ULID-shaped prefix from time plus a counter. */
export function sequentialIds(prefix = ''): IdSource {
  let n = 0;
  return { next: () => `${prefix}${String(++n).padStart(10, '0')}` };
}

const ULID_CHARS = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The millisecond timestamp encoded in a ULID, or undefined when it is not one. */
export function ulidTime(id: string): number | undefined {
  if (!/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) return undefined;
  let ms = 0;
  for (let i = 0; i < 10; i++) ms = ms * 32 + ULID_CHARS.indexOf(id[i]!);
  return ms;
}

/** The smallest ULID at a millisecond: a key for time-window range queries. */
export function ulidFloor(ms: number): string {
  let t = Math.max(0, Math.floor(ms));
  let out = '';
  for (let i = 0; i < 10; i++) {
    out = ULID_CHARS[t % 32] + out;
    t = Math.floor(t / 32);
  }
  return `${out}${'0'.repeat(16)}`;
}

let lastMs = Number.NaN;
let lastText = '';

/**
 * RFC 3339 in UTC with milliseconds. Transitions stamp many times within one
 * millisecond, and formatting a Date is costly next to a transition, so the
 * last result is reused.
 */
export function rfc3339(ms: number): string {
  if (ms !== lastMs) {
    lastText = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastText;
}
