import { AgentPool } from '../src/agent/index.js';
import { silentLogger } from '../src/log.js';
import type { Repository } from '../src/protocol/index.js';
import { defineRuntime } from '../src/runtimes/index.js';

/** A runtime that does nothing: benchmarks measure the engine, not the work. */
export const noopRuntime = defineRuntime({
  name: 'noop',
  args: {},
  run: () => ({ conclusion: 'SUCCESS' }),
});

/**
 * Runs every started node to completion with real AgentPools (the same code
 * adagiod runs) and resolves when `expectedNodes` attempts have finished.
 */
export async function drainWithPools(
  repository: Repository | Repository[],
  options: { concurrency: number; expectedNodes: number; pools?: number; timeoutMs?: number },
): Promise<void> {
  const repos = Array.isArray(repository) ? repository : [repository];
  const pools = Array.from(
    { length: options.pools ?? 1 },
    (_, i) =>
      new AgentPool({
        repository: repos[i % repos.length]!,
        runtimes: [noopRuntime],
        concurrency: options.concurrency,
        logger: silentLogger,
      }),
  );
  await Promise.all(pools.map((p) => p.start()));
  const deadline = Date.now() + (options.timeoutMs ?? 600_000);
  const finished = () => pools.reduce((n, p) => n + p.counters.finished.SUCCESS, 0);
  while (finished() < options.expectedNodes) {
    if (Date.now() > deadline)
      throw new Error(`timed out with ${finished()}/${options.expectedNodes} nodes finished`);
    await new Promise((r) => setTimeout(r, 5));
  }
  await Promise.all(pools.map((p) => p.stop({ graceMs: 1000 })));
}
