import { parseArgs } from 'node:util';
import { adagio } from './peers/adagio.js';
import type { Measured } from './peers/peer.js';
import { fmt, median, table } from './report.js';
import { openStore, STORE_KINDS, type StoreKind } from './stores.js';

/**
 * `npm run bench -- width [memory|etcd|postgres|dynamodb...] [--size N] [--rounds N]`:
 * issue 18's rule-9 row. Per-node cost (wall and CPU) of one run of N
 * independent nodes against N one-node runs, each drained from a backlog by
 * one AgentPool of 16 slots; target: the wide run within 1.5× of the runs.
 * etcd and DynamoDB Local default to a smaller N, so each finishes in a few
 * minutes on a 2-core machine (they start runs at tens to hundreds per second).
 */
const DEFAULT_SIZE: Record<StoreKind, number> = {
  memory: 20_000,
  postgres: 20_000,
  etcd: 2_000,
  dynamodb: 2_000,
};
const TARGET = 1.5;

export async function run(args: string[] = []): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { size: { type: 'string' }, rounds: { type: 'string', default: '1' } },
  });
  const unknown = positionals.filter((p) => !(STORE_KINDS as readonly string[]).includes(p));
  if (unknown.length > 0)
    throw new Error(`unknown backend ${unknown.join(', ')}; choose from ${STORE_KINDS.join(', ')}`);
  const kinds = positionals.length > 0 ? (positionals as StoreKind[]) : [...STORE_KINDS];
  const rounds = Number(values.rounds);
  const rows: string[][] = [];
  for (const kind of kinds) {
    const chosen = values.size ?? process.env.ADAGIO_BENCH_WIDTH;
    const size = Number(chosen ?? DEFAULT_SIZE[kind]);
    if (!Number.isInteger(size) || size < 1 || size > 20_000)
      throw new Error(`--size must be 1..20,000, got ${chosen}`);
    const store = await openStore(kind);
    try {
      const runs = adagio(kind, store);
      const wide = adagio(kind, store, { width: size });
      await runs.backlog!(Math.min(100, size)); // warm-up, untimed
      const measured: Record<'runs' | 'wide', Measured[]> = { runs: [], wide: [] };
      for (let r = 1; r <= rounds; r++) {
        process.stderr.write(
          `width: ${kind}, round ${r}/${rounds}, ${size} one-node runs, then 1 run × ${size}\n`,
        );
        measured.runs.push(await runs.backlog!(size));
        measured.wide.push(await wide.backlog!(size));
      }
      const cost = (ms: Measured[]) => ({
        wall: median(ms.map((m) => (m.ms * 1000) / m.jobs)),
        cpu: median(ms.map((m) => (m.workerUs + (m.serverUs ?? 0)) / m.jobs)),
      });
      const a = cost(measured.runs);
      const b = cost(measured.wide);
      const sizeNote =
        size < DEFAULT_SIZE.memory && chosen === undefined ? `${fmt(size)} (smaller default)` : fmt(size);
      rows.push([
        kind,
        sizeNote,
        `${fmt(a.wall)} / ${fmt(a.cpu)}`,
        `${fmt(b.wall)} / ${fmt(b.cpu)}`,
        `${(b.wall / a.wall).toFixed(2)}× / ${(b.cpu / a.cpu).toFixed(2)}×`,
        Math.max(b.wall / a.wall, b.cpu / a.cpu) <= TARGET ? 'met' : 'missed',
      ]);
    } finally {
      await store.close();
    }
  }
  table(
    `Per-node cost in one run of N independent nodes vs N one-node runs (AgentPool, 16 slots, median of ${rounds}; ` +
      'CPU = this process + the store server; target: wide within 1.5×)',
    [
      'backend',
      'N',
      'N runs × 1: wall / CPU µs per node',
      '1 run × N: wall / CPU µs per node',
      'ratio wall / CPU',
      'target',
    ],
    rows,
  );
  if (rows.some((r) => r[1]!.includes('smaller default')))
    console.log(
      `\netcd and DynamoDB Local default to N = ${fmt(DEFAULT_SIZE.etcd)} and ${fmt(DEFAULT_SIZE.dynamodb)}, so each ` +
        'finishes in a few minutes on a 2-core machine; --size N (or ADAGIO_BENCH_WIDTH) sets N for every backend, at most 20,000.',
    );
}
