import type { GraphSpec, NodeSpec } from '../../src/model/index.js';
import type { Repository } from '../../src/protocol/index.js';
import type { Runtime } from '../../src/runtimes/runtime.js';
import { sevenNode } from '../graphs.js';
import { type RunningPools, startPools } from '../pool.js';
import type { Store } from '../stores.js';
import { type Contender, latencies, measure, PRODUCERS, SLOTS } from './peer.js';

/**
 * Adagio through the real AgentPool (16 slots), on any store. Independent jobs
 * come in two shapes: `runs` (N one-node runs) or `width` (one run of N nodes
 * without edges, capped at the job count). `claimAhead`: the pool's
 * claim-ahead bound (default: the pool's own, the slot count).
 */
export function adagio(
  label: string,
  store: Store,
  shape: { runs: true } | { width: number } = { runs: true },
  claimAhead?: number,
): Contender {
  const wide = 'width' in shape;
  const poolOptions = { concurrency: SLOTS, ...(claimAhead === undefined ? {} : { claimAhead }) };
  const fresh = async <T>(fn: (repo: Repository) => Promise<T>): Promise<T> => {
    const { repository, teardown } = await store.fresh();
    try {
      return await fn(repository);
    } finally {
      await teardown();
    }
  };
  /** Times pools started on `repo` through `work`, which waits for `jobs` finishes; stopping them is not timed. */
  const drained = async (repo: Repository, jobs: number, work: (pools: RunningPools) => Promise<void>) => {
    let pools: RunningPools | undefined;
    try {
      return await measure(jobs, store.cpu, async () => {
        pools = await startPools(repo, poolOptions);
        await work(pools);
      });
    } finally {
      await pools?.stop();
    }
  };
  const contender: Contender = {
    name: wide ? `${label}, 1 run × ${shape.width.toLocaleString('en-US')} nodes` : label,
    backlog: (jobs) =>
      fresh(async (repo) => {
        const n = wide ? Math.min(shape.width, jobs) : jobs;
        if (wide) await repo.start(independent(n));
        else await startAll(n, 16, () => repo.start(independent(1)));
        return drained(repo, n, (pools) => pools.waitFor(n));
      }),
  };
  if (wide) return contender;
  return {
    ...contender,
    latency: (rate, count) =>
      fresh(async (repo) => {
        const seen = latencies(count);
        // The moment the add was due travels in the node's metadata; the runtime reads it when the work starts.
        const runtime: Runtime = {
          name: 'noop',
          run: async ({ node }) => {
            seen.record(Number(node.spec.metadata.t0?.[0]));
            return { conclusion: 'SUCCESS' };
          },
        };
        const pools = await startPools(repo, { ...poolOptions, runtime });
        try {
          return await seen.run(rate, (t0) => repo.start(independent(1, { t0: [String(t0)] })));
        } finally {
          await pools.stop();
        }
      }),
    dag: (runs) =>
      fresh((repo) =>
        drained(repo, runs * 7, async (pools) => {
          await startAll(runs, PRODUCERS, () => repo.start(sevenNode('noop')));
          await pools.waitFor(runs * 7);
        }),
      ),
  };
}

/** `n` no-op nodes without edges. */
function independent(n: number, metadata: NodeSpec['metadata'] = {}): GraphSpec {
  return {
    nodes: Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime: 'noop', metadata, retry: {} })),
    edges: [],
  };
}

/** Calls `start` `n` times from `starters` concurrent starters, as API clients would (backends batch concurrent starts). */
async function startAll(n: number, starters: number, start: () => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: starters }, async () => {
      while (next < n) {
        next++;
        await start();
      }
    }),
  );
}
