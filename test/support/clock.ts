import type { Clock } from '../../src/model/ids.js';

/**
 * The system clock moved ahead by hand: what the time rules (retry delays,
 * node timeouts, run deadlines) are tested with, so no test waits for them.
 * It runs with real time, so everything else (list windows, leases a test
 * heartbeats) behaves as usual.
 */
export class SkewClock implements Clock {
  offsetMs = 0;
  now(): number {
    return Date.now() + this.offsetMs;
  }
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}
