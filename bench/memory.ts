import { MemoryRepository } from '../src/backends/memory/index.js';
import type { GraphSpec } from '../src/model/types.js';
import { drainWithDriver } from './driver.js';
import { sevenNode, wideAndLong } from './graphs.js';
import { drainWithPools } from './pool.js';
import { report, timed } from './report.js';

type Drain = (repo: MemoryRepository, expectedNodes: number) => Promise<unknown>;

const viaPool: Drain = (repo, expectedNodes) => drainWithPools(repo, { concurrency: 16, expectedNodes });
const viaDriver: Drain = (repo, expectedNodes) =>
  drainWithDriver(repo, { runtime: 'noop', concurrency: 16, expectedNodes });

/** Starts `runs` runs of `graph` and times them to completion (start included). */
async function measure(graphs: () => GraphSpec, runs: number, drain: Drain) {
  const nodes = graphs().nodes.length * runs;
  const { ms } = await timed(async () => {
    const repo = new MemoryRepository();
    const draining = drain(repo, nodes);
    for (let i = 0; i < runs; i++) await repo.start(graphs());
    await draining;
    await repo.close();
  });
  return { nodes, ms, rate: nodes / (ms / 1000) };
}

/** The median of `rounds` timed measurements: one round on a shared 2-core machine is noise-prone. */
async function median(rounds: number, once: () => ReturnType<typeof measure>) {
  const all = [];
  for (let i = 0; i < rounds; i++) all.push(await once());
  all.sort((a, b) => a.rate - b.rate);
  return { ...all[Math.floor(all.length / 2)]!, all };
}

const ROUNDS = 3;

/** Memory backend: no-op node throughput for many small runs and for one 10,000-node run. */
export async function run(): Promise<void> {
  // Warm-up: one untimed round of every measurement, so the JIT has compiled each path before timing.
  for (const drain of [viaPool, viaDriver]) {
    await measure(() => sevenNode(), 1000, drain);
    await measure(() => wideAndLong(10_000), 1, drain);
  }

  const rows: [string, string, string][] = [];
  for (const [label, drain] of [
    ['agent pool, 16 slots', viaPool],
    ['protocol driver, 16 workers', viaDriver],
  ] as const) {
    const small = await median(ROUNDS, () => measure(() => sevenNode(), 1000, drain));
    const large = await median(ROUNDS, () => measure(() => wideAndLong(10_000), 1, drain));
    const spread = (m: typeof small) => `median of ${m.all.map((r) => fmt(r.rate)).join(', ')}`;
    rows.push(
      [
        `7-node DAG x 1,000 runs (${label})`,
        `${fmt(small.rate)} nodes/s`,
        `${small.nodes} nodes in ${small.ms.toFixed(0)} ms; ${spread(small)}`,
      ],
      [
        `one 10,000-node run (${label})`,
        `${fmt(large.rate)} nodes/s`,
        `${large.nodes} nodes in ${large.ms.toFixed(0)} ms; ${spread(large)}`,
      ],
      [
        `per-node cost, 10,000-node / 7-node (${label})`,
        `${(small.rate / large.rate).toFixed(2)}x`,
        'target <= 2x',
      ],
    );
  }
  report('memory (target >= 20,000 nodes/s)', rows);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
