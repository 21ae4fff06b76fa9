import { randomUUID } from 'node:crypto';
import { DynamoDBClient, TransactWriteItemsCommand } from '@aws-sdk/client-dynamodb';
import { DbCounters } from '../src/backends/dynamodb/db.js';
import { DynamoDbRepository } from '../src/backends/dynamodb/index.js';
import { DynamoDbLocal, uniqueTable } from '../test/support/dynamodb.js';
import { processCpuUs } from './cpu.js';
import { drainWithDriver } from './driver.js';
import { sevenNode } from './graphs.js';
import { median, percentile, report, timed } from './report.js';

/**
 * DynamoDB backend, against a DynamoDB Local this benchmark starts itself:
 * - no-op nodes/s for RUNS runs of the 7-node DAG (protocol driver: subscribe,
 *   claim, finish) against the TransactWriteItems ceiling measured in the same
 *   run at the same concurrency (one conditional put per transaction). A node
 *   needs at least two transactions (claim, finish): target >= 50% of ceiling/2.
 *   The ceiling is measured in slices interleaved with the workload's (see
 *   interleaved), so both sides of the ratio see the same machine load and
 *   DynamoDB Local's JIT at the same warmth, after an unmeasured warm-up that
 *   lasts until the ceiling stops climbing; DynamoDB Local's CPU per node
 *   and per ceiling transaction give the ratio at equal server CPU as well.
 *   `ADAGIO_BENCH_SLICES` sets the number of workload slices (default 5).
 * - READY → claimed latency p50/p99, idle (one run at a time).
 * `ADAGIO_BENCH_RUNS` shrinks the run count (a smoke run); default 1,000.
 */
const CONCURRENCY = 16;
const RUNS = Number(process.env.ADAGIO_BENCH_RUNS ?? 1_000);
/** Nodes of the flatness check (ADAGIO_BENCH_WIDE): one run that wide against as many one-node runs. */
const WIDE = Number(process.env.ADAGIO_BENCH_WIDE ?? 2_000);
/** Workload slices; a ceiling slice of CEILING_MS goes before, between and after them. */
const SLICES = Number(process.env.ADAGIO_BENCH_SLICES ?? 5);
const CEILING_MS = 1_500;
/** Runs per round of the unmeasured warm-up (DynamoDB Local's JIT), and the most rounds. */
const WARMUP_RUNS = 100;
const WARMUP_ROUNDS = 16;
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
    const w = await interleaved(repo, server, table);
    const flat = await flatCost(repo, WIDE);
    const rate = (RUNS * 7) / (w.ms / 1000);
    const ceiling = w.ceilings.reduce((a, b) => a + b, 0) / w.ceilings.length;
    const sliceRatios = w.sliceRates.map((r, i) => r / ((w.ceilings[i]! + w.ceilings[i + 1]!) / 4));
    const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
    report('dynamodb (DynamoDB Local)', [
      [
        `7-node DAG x ${RUNS.toLocaleString('en-US')} runs (driver, ${CONCURRENCY} workers, no-op)`,
        `${rate.toFixed(0)} nodes/s`,
        `${RUNS * 7} nodes in ${w.ms.toFixed(0)} ms, ${SLICES} slices: ${w.sliceRates.map((r) => r.toFixed(0)).join(', ')} nodes/s`,
      ],
      [
        `TransactWriteItems ceiling (one conditional put, ${CONCURRENCY} clients)`,
        `${ceiling.toFixed(0)} txn/s`,
        `mean of ${w.ceilings.length} slices of ${CEILING_MS} ms around the workload's: ${w.ceilings.map((c) => c.toFixed(0)).join(', ')} (spread ${pct((Math.max(...w.ceilings) - Math.min(...w.ceilings)) / ceiling)} of the mean)`,
      ],
      [
        'unmeasured warm-up',
        `${w.warmup.length} rounds`,
        `each a ceiling slice and ${WARMUP_RUNS} runs, until the ceiling stopped climbing: ${w.warmup.map((c) => c.toFixed(0)).join(', ')} txn/s`,
      ],
      ['ratio of nodes/s to ceiling/2', pct(rate / (ceiling / 2)), 'target >= 50%'],
      [
        'ratio per slice (its nodes/s to the mean of the ceilings either side, /2)',
        pct(median(sliceRatios)),
        `median; ${sliceRatios.map(pct).join(', ')}`,
      ],
      [
        'DynamoDB Local CPU per node / per ceiling transaction',
        `${(w.serverUsPerNode / 1000).toFixed(2)} / ${(w.serverUsPerCeilingTxn / 1000).toFixed(2)} ms`,
        `ratio at equal server CPU (load-independent while the server is the bottleneck): ${pct((2 * w.serverUsPerCeilingTxn) / w.serverUsPerNode)}`,
      ],
      ['READY → claimed, idle', `${idle.p50.toFixed(1)} ms`, `p50; p99 ${idle.p99.toFixed(1)} ms`],
      ...perNode(w.cost, RUNS * 7, w.cpu),
      ...flat,
    ]);
  } finally {
    await repo.deleteTable().catch(() => undefined);
    await repo.close();
    await server.kill();
  }
}

/**
 * The workload in SLICES slices of RUNS/SLICES runs, each drained before the
 * next, with a ceiling slice before, between and after them: the machine's
 * load (other work on a shared host comes and goes) then weighs on both
 * sides of the ratio alike, and each workload slice has a ceiling measured
 * just before and just after it. Counters and CPU are the workload slices' only.
 */
async function interleaved(repo: DynamoDbRepository, server: DynamoDbLocal, table: string) {
  const serverCpu = () => (server.pid === undefined ? Number.NaN : processCpuUs(server.pid));
  // DynamoDB Local's JVM compiles its hot paths over the first tens of seconds, the one-put ceiling's
  // longer than the workload's (it climbs from ~500 to ~1,500 txn/s): warm both up unmeasured, in
  // rounds, until the ceiling stops climbing (two rounds in a row within 5% of the best before).
  let best = 0;
  const warmup: number[] = [];
  for (let round = 0, flat = 0; round < WARMUP_ROUNDS && flat < 2; round++) {
    const c = await txnCeiling(server.endpoint, table, CONCURRENCY, CEILING_MS);
    warmup.push(c);
    flat = c < best * 1.05 ? flat + 1 : 0;
    best = Math.max(best, c);
    await workload(repo, Math.min(WARMUP_RUNS, RUNS));
  }
  const ceilingTxns: number[] = [];
  let ceilingCpuUs = 0;
  const ceiling = async () => {
    const s0 = serverCpu();
    const c = await txnCeiling(server.endpoint, table, CONCURRENCY, CEILING_MS);
    ceilingCpuUs += serverCpu() - s0;
    ceilingTxns.push((c * CEILING_MS) / 1000);
    return c;
  };
  const ceilings = [await ceiling()];
  let serverUs = 0;
  const sliceRates: number[] = [];
  let ms = 0;
  let cost = new DbCounters();
  const cpu = { user: 0, system: 0 };
  let started = 0;
  for (let k = 0; k < SLICES; k++) {
    const runs = Math.round((RUNS * (k + 1)) / SLICES) - started;
    started += runs;
    const c0 = repo.counters.snapshot();
    const cpu0 = process.cpuUsage();
    const s0 = serverCpu();
    const slice = await timed(() => workload(repo, runs));
    serverUs += serverCpu() - s0;
    const used = process.cpuUsage(cpu0);
    cpu.user += used.user;
    cpu.system += used.system;
    cost = cost.plus(repo.counters.snapshot().minus(c0));
    ms += slice.ms;
    sliceRates.push((runs * 7) / (slice.ms / 1000));
    ceilings.push(await ceiling());
  }
  const ceilingTxnTotal = ceilingTxns.reduce((a, b) => a + b, 0);
  return {
    warmup,
    ms,
    sliceRates,
    ceilings,
    cost,
    cpu,
    serverUsPerNode: serverUs / (RUNS * 7),
    serverUsPerCeilingTxn: ceilingCpuUs / ceilingTxnTotal,
  };
}

/** `runs` runs of the 7-node DAG started by 4 starters and drained by the protocol driver. */
async function workload(repo: DynamoDbRepository, runs: number): Promise<void> {
  const drained = drainWithDriver(repo, {
    runtime: 'noop',
    concurrency: CONCURRENCY,
    expectedNodes: runs * 7,
  });
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      while (next++ < runs) await repo.start(sevenNode('noop'));
    }),
  );
  await drained;
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
      `${per(c.gets)} gets (${per(c.getKeys)} keys), ${per(c.queries)} queries (${per(c.queryItems)} items)`,
    ],
    [
      'transactions per node',
      per(c.transactions),
      `${per(c.txItems)} items, ${per(c.refused)} refused; ${per(c.batchWrites)} batch writes, ${per(c.updates)} updates`,
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

/** Conditional single-item transactions per second at `concurrency`, for `ms`. */
async function txnCeiling(endpoint: string, table: string, concurrency: number, ms: number): Promise<number> {
  const client = new DynamoDBClient({ endpoint, region: 'us-east-1', credentials });
  let n = 0;
  const end = performance.now() + ms;
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
  return n / (ms / 1000);
}
