import { randomUUID } from 'node:crypto';
import { DynamoDBClient, TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb';
import type { DbCounters } from '../src/backends/dynamodb/db.js';
import { DynamoDbRepository } from '../src/backends/dynamodb/index.js';
import { DynamoDbLocal, uniqueTable } from '../test/support/dynamodb.js';
import { drainWithDriver } from './driver.js';
import { sevenNode } from './graphs.js';
import { percentile, report, timed } from './report.js';

/**
 * DynamoDB backend, against a DynamoDB Local this benchmark starts itself:
 * - no-op nodes/s for RUNS runs of the 7-node DAG (protocol driver: subscribe,
 *   claim, finish) against the TransactWriteItems ceiling measured in the same
 *   run at the same concurrency (one conditional put per transaction). A node
 *   needs at least two transactions (claim, finish): target >= 50% of ceiling/2.
 * - READY → claimed latency p50/p99, idle (one run at a time).
 * `ADAGIO_BENCH_RUNS` shrinks the run count (a smoke run); default 1,000.
 */
const CONCURRENCY = 16;
const RUNS = Number(process.env.ADAGIO_BENCH_RUNS ?? 1_000);
/** Nodes of the flatness check (ADAGIO_BENCH_WIDE): one run that wide against as many one-node runs. */
const WIDE = Number(process.env.ADAGIO_BENCH_WIDE ?? 2_000);
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

export async function run(): Promise<void> {
  const server = await DynamoDbLocal.start();
  const table = uniqueTable('bench');
  const repo = await DynamoDbRepository.connect({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials,
    table,
  });
  try {
    const idle = await claimLatency(repo, Math.min(50, RUNS));
    const before = await txnCeiling(server.endpoint, table, CONCURRENCY);
    const c0 = repo.counters.snapshot();
    const cpu0 = process.cpuUsage();
    const e2e = await timed(async () => {
      const drained = drainWithDriver(repo, {
        runtime: 'noop',
        concurrency: CONCURRENCY,
        expectedNodes: RUNS * 7,
      });
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next++ < RUNS) await repo.start(sevenNode('noop'));
        }),
      );
      await drained;
    });
    const cpu = process.cpuUsage(cpu0);
    const cost = repo.counters.snapshot().minus(c0);
    const flat = await flatCost(repo, WIDE);
    const after = await txnCeiling(server.endpoint, table, CONCURRENCY);
    const ceiling = (before + after) / 2;
    const rate = (RUNS * 7) / (e2e.ms / 1000);
    report('dynamodb (DynamoDB Local)', [
      [
        `7-node DAG x ${RUNS.toLocaleString('en-US')} runs (driver, ${CONCURRENCY} workers, no-op)`,
        `${rate.toFixed(0)} nodes/s`,
        `${RUNS * 7} nodes in ${e2e.ms.toFixed(0)} ms`,
      ],
      [
        `TransactWriteItems ceiling (one conditional put, ${CONCURRENCY} clients)`,
        `${ceiling.toFixed(0)} txn/s`,
        `mean of ${before.toFixed(0)} before and ${after.toFixed(0)} after`,
      ],
      ['ratio of nodes/s to ceiling/2', `${((100 * rate) / (ceiling / 2)).toFixed(0)}%`, 'target >= 50%'],
      ['READY → claimed, idle', `${idle.p50.toFixed(1)} ms`, `p50; p99 ${idle.p99.toFixed(1)} ms`],
      ...perNode(cost, RUNS * 7, cpu),
      ...flat,
    ]);
  } finally {
    await repo.deleteTable().catch(() => undefined);
    await repo.close();
    await server.kill();
  }
}

/**
 * Issue 18's flatness: per-node requests and units for one run of `width`
 * independent nodes against `width` one-node runs. Nothing a transition does
 * reads the whole run, so the two should match.
 */
async function flatCost(repo: DynamoDbRepository, width: number): Promise<[string, string, string][]> {
  const measure = async (starts: () => Promise<unknown>) => {
    const c0 = repo.counters.snapshot();
    const drained = drainWithDriver(repo, {
      runtime: 'flat',
      concurrency: CONCURRENCY,
      expectedNodes: width,
    });
    await starts();
    await drained;
    const c = repo.counters.snapshot().minus(c0);
    const per = (n: number) => (n / width).toFixed(2);
    return `${per(c.writeUnits)} WRU, ${per(c.transactions)} txn (${per(c.txItems)} items), ${per(c.gets)} gets, ${per(c.queries)} queries, ${per(c.readUnits)} RRU`;
  };
  const spec = (n: number) => ({
    nodes: Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime: 'flat', metadata: {}, retry: {} })),
    edges: [],
  });
  const wide = await measure(() => repo.start(spec(width)));
  const many = await measure(async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next++ < width) await repo.start(spec(1));
      }),
    );
  });
  return [
    [`per node, one run of ${width} independent nodes`, wide, ''],
    [`per node, ${width} one-node runs`, many, ''],
  ];
}

/** What one node (its claim and finish, its share of starts, polls and sweeps) cost, as DynamoDB counts it. */
function perNode(c: DbCounters, nodes: number, cpu: NodeJS.CpuUsage): [string, string, string][] {
  const per = (n: number) => (n / nodes).toFixed(2);
  return [
    [
      'write units per node (claim + finish + share of start)',
      `${per(c.writeUnits)} WRU`,
      'ConsumedCapacity, table and indexes',
    ],
    [
      'read units per node',
      `${per(c.readUnits)} RRU`,
      `${per(c.gets)} gets (${per(c.getKeys)} keys), ${per(c.queries)} queries`,
    ],
    [
      'transactions per node',
      per(c.transactions),
      `${per(c.txItems)} items; ${per(c.batchWrites)} batch writes, ${per(c.updates)} updates`,
    ],
    [
      'client CPU per node',
      `${((cpu.user + cpu.system) / nodes).toFixed(0)} µs`,
      'this process: backend, SDK, driver',
    ],
  ];
}

/** Idle READY→claimed: one single-node run at a time, claimed by a driver as soon as subscribe says READY. */
async function claimLatency(repo: DynamoDbRepository, samples: number) {
  const lease = await repo.grantLease(60_000);
  const times: number[] = [];
  const ac = new AbortController();
  // One run at a time, so the next READY event is the current sample's (whether or not start returned yet).
  let current: { t0: number; done: () => void } | undefined;
  const pump = (async () => {
    for await (const ev of repo.subscribe({ runtimes: ['latency'], signal: ac.signal })) {
      const c = await repo.claim({ runId: ev.runId, node: ev.node, leaseId: lease.id, agentId: 'latency' });
      if (!c || !current) continue;
      times.push(performance.now() - current.t0);
      current.done();
      current = undefined;
    }
  })();
  for (let i = 0; i < samples; i++) {
    await new Promise<void>((done) => {
      current = { t0: performance.now(), done };
      void repo.start({ nodes: [{ name: 'only', runtime: 'latency', metadata: {}, retry: {} }], edges: [] });
    });
  }
  ac.abort();
  await pump;
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** Conditional single-item transactions per second at `concurrency`, for 3 s. */
async function txnCeiling(endpoint: string, table: string, concurrency: number): Promise<number> {
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials });
  let n = 0;
  const end = performance.now() + 3_000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        await client.send(
          new TransactWriteItemsCommand({
            TransactItems: [
              {
                Put: {
                  TableName: table,
                  Item: { pk: { S: 'bench' }, sk: { S: randomUUID() }, v: { N: '1' } },
                  ConditionExpression: 'attribute_not_exists(pk)',
                },
              },
            ],
          }),
        );
        n++;
      }
    }),
  );
  client.destroy();
  return n / 3;
}
