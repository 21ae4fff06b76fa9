import { ApiServer } from '../src/api/server.js';
import { MemoryRepository } from '../src/backends/memory/index.js';
import { AdagioClient } from '../src/client/index.js';
import { sevenNode } from './graphs.js';
import { percentile, report, timed } from './report.js';

const CLIENTS = 16;
const STARTS = 4000;
const STORED_RUNS = 10_000;
const LIST_SAMPLES = 200;

/**
 * The control plane over real HTTP on loopback (memory backend, no agents, so
 * the API path alone is measured): Start throughput with 16 concurrent
 * clients, and ListRuns first-page latency with 10,000 stored runs.
 */
export async function run(): Promise<void> {
  const repository = new MemoryRepository();
  const server = new ApiServer({ repository, ui: false });
  const address = await server.listen('127.0.0.1', 0);
  const clients = Array.from({ length: CLIENTS }, () => new AdagioClient({ address }));
  const spec = sevenNode();
  try {
    // Warm-up: connections open, JIT compiled.
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < 50; i++) await c.start(spec);
      }),
    );
    let next = 0;
    const { ms } = await timed(() =>
      Promise.all(
        clients.map(async (c) => {
          while (next++ < STARTS) await c.start(spec);
        }),
      ),
    );
    const startRate = STARTS / (ms / 1000);

    const stored = (await repository.stats()).runCount;
    for (let i = stored; i < STORED_RUNS; i++) await repository.start(spec);
    const latencies: number[] = [];
    for (let i = 0; i < LIST_SAMPLES; i++) {
      const t = await timed(() => clients[0]!.listRuns({ limit: 100 }));
      latencies.push(t.ms);
    }
    latencies.sort((a, b) => a - b);
    report('api (memory backend, Connect over HTTP/1.1 on loopback)', [
      [
        `Start, ${CLIENTS} concurrent clients`,
        `${Math.round(startRate).toLocaleString('en-US')} runs/s`,
        `${STARTS} runs in ${Math.round(ms)} ms`,
      ],
      [
        `ListRuns first page (100), ${STORED_RUNS.toLocaleString('en-US')} stored runs, p50`,
        `${percentile(latencies, 50).toFixed(2)} ms`,
        `${LIST_SAMPLES} samples`,
      ],
      ['ListRuns p99', `${percentile(latencies, 99).toFixed(2)} ms`, ''],
    ]);
  } finally {
    await server.close();
    await repository.close();
  }
}
