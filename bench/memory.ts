import { MemoryRepository } from '../src/backends/memory/index.js';
import { drainWithDriver } from './driver.js';
import { sevenNode, wideAndLong } from './graphs.js';
import { drainWithPools } from './pool.js';
import { report, timed } from './report.js';

type Drain = (repo: MemoryRepository, expectedNodes: number) => Promise<unknown>;

const viaPool: Drain = (repo, expectedNodes) => drainWithPools(repo, { concurrency: 16, expectedNodes });
const viaDriver: Drain = (repo, expectedNodes) =>
  drainWithDriver(repo, { runtime: 'noop', concurrency: 16, expectedNodes });

/** Starts `runs` runs of `graph` and times them to completion (start included). */
async function measure(graphs: () => Parameters<MemoryRepository['start']>[0], runs: number, drain: Drain) {
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

/** Memory backend: no-op node throughput for many small runs and for one 10,000-node run. */
export async function run(): Promise<void> {
  // Warm-up: let the JIT settle so the timed rounds measure the engine, not compilation.
  await measure(() => sevenNode(), 300, viaPool);
  await measure(() => sevenNode(), 300, viaDriver);

  const rows: [string, string, string][] = [];
  for (const [label, drain] of [
    ['agent pool, 16 slots', viaPool],
    ['protocol driver, 16 workers', viaDriver],
  ] as const) {
    const small = await measure(() => sevenNode(), 1000, drain);
    const large = await measure(() => wideAndLong(10_000), 1, drain);
    rows.push(
      [`7-node DAG x 1,000 runs (${label})`, `${fmt(small.rate)} nodes/s`, `${small.nodes} nodes in ${small.ms.toFixed(0)} ms`],
      [`one 10,000-node run (${label})`, `${fmt(large.rate)} nodes/s`, `${large.nodes} nodes in ${large.ms.toFixed(0)} ms`],
      [`per-node cost, 10,000-node / 7-node (${label})`, `${(small.rate / large.rate).toFixed(2)}x`, 'target <= 2x'],
    );
  }
  report('memory (target >= 20,000 nodes/s)', rows);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
