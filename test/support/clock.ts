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

/**
 * A store under test on a SkewClock whose `advance(ms)` moves the clock and
 * runs the store's time sweep (the conformance harness's BackendUnderTest),
 * for stores judging time by the process clock (etcd, DynamoDB).
 */
export async function skewed<R extends { sweepTimers(): Promise<unknown> }>(
  connect: (clock: SkewClock) => Promise<{ repository: R; teardown: () => Promise<void> }>,
): Promise<{ repository: R; teardown: () => Promise<void>; advance: (ms: number) => Promise<void> }> {
  const clock = new SkewClock();
  const { repository, teardown } = await connect(clock);
  return {
    repository,
    teardown,
    advance: async (ms) => {
      clock.advance(ms);
      await repository.sweepTimers();
    },
  };
}
