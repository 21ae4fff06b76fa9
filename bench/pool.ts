import { AgentPool } from '../src/agent/index.js';
import { silentLogger } from '../src/log.js';
import type { Repository } from '../src/protocol/index.js';
import { defineRuntime } from '../src/runtimes/index.js';
import type { Runtime } from '../src/runtimes/runtime.js';

/** A runtime that does nothing: benchmarks measure the engine, not the work. */
export const noopRuntime = defineRuntime({
  name: 'noop',
  args: {},
  run: () => ({ conclusion: 'SUCCESS' }),
});

/** Started AgentPools: how many attempts they finished, a wait for a count, and a stop. */
export interface RunningPools {
  finished(): number;
  /** Resolves once `count` attempts have finished since the start; rejects after `timeoutMs` (default 10 min). */
  waitFor(count: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts real AgentPools (the same code adagiod runs) on the repositories, `runtime` the no-op one by default. */
export async function startPools(
  repository: Repository | Repository[],
  options: { concurrency: number; pools?: number; runtime?: Runtime; claimAhead?: number },
): Promise<RunningPools> {
  const repos = Array.isArray(repository) ? repository : [repository];
  const pools = Array.from(
    { length: options.pools ?? 1 },
    (_, i) =>
      new AgentPool({
        repository: repos[i % repos.length]!,
        runtimes: [options.runtime ?? noopRuntime],
        concurrency: options.concurrency,
        ...(options.claimAhead === undefined ? {} : { claimAhead: options.claimAhead }),
        logger: silentLogger,
      }),
  );
  await Promise.all(pools.map((p) => p.start()));
  const finished = () => pools.reduce((n, p) => n + p.counters.finished.SUCCESS, 0);
  return {
    finished,
    waitFor: async (count, timeoutMs = 600_000) => {
      const deadline = Date.now() + timeoutMs;
      while (finished() < count) {
        if (Date.now() > deadline) throw new Error(`timed out with ${finished()}/${count} nodes finished`);
        await new Promise((r) => setTimeout(r, 5));
      }
    },
    stop: async () => {
      await Promise.all(pools.map((p) => p.stop({ graceMs: 1000 })));
    },
  };
}

/**
 * Runs every started node to completion with real AgentPools and resolves
 * when `expectedNodes` attempts have finished.
 */
export async function drainWithPools(
  repository: Repository | Repository[],
  options: { concurrency: number; expectedNodes: number; pools?: number; timeoutMs?: number },
): Promise<void> {
  const running = await startPools(repository, options);
  await running.waitFor(options.expectedNodes, options.timeoutMs);
  await running.stop();
}
