import { parseArgs } from 'node:util';
import { adagio } from './peers/adagio.js';
import { bullmq } from './peers/bullmq.js';
import { rowsFloor } from './peers/floor.js';
import { graphileWorker } from './peers/graphile.js';
import { type Contender, type Measured, type Peer, SLOTS } from './peers/peer.js';
import { fmt, median, percentile, table } from './report.js';
import { openStore } from './stores.js';

/**
 * `npm run bench -- peers [--rounds N] [--jobs N] [--latency-jobs N] [--dag-runs N] [--quick]`:
 * Adagio (memory and PostgreSQL) beside graphile-worker and BullMQ on the
 * workloads of issue 18, 16 worker slots in this one process, no-op jobs,
 * rounds interleaved (every contender runs each workload once per round),
 * medians printed. Adagio on PostgreSQL runs as configured by default (a
 * claim-ahead of 16, the slot count) and with a claim-ahead of FAST_AHEAD,
 * graphile-worker's fast mode's local queue. The rows floor (peers/floor.ts)
 * is a measure, not a peer: a one-node run's rows written by hand in
 * graphile-worker's batches. Environment: ADAGIO_BENCH_ROUNDS, ADAGIO_BENCH_JOBS.
 */
const RATE = 300; // add → start is measured at this many adds per second
/** graphile-worker fast's local queue (peers/graphile.ts BATCH): Adagio's claim-ahead in its own fast setting. */
const FAST_AHEAD = 500;

function options(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      rounds: { type: 'string' },
      jobs: { type: 'string' },
      'latency-jobs': { type: 'string' },
      'dag-runs': { type: 'string' },
      quick: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const int = (flag: string | undefined, env: string | undefined, normal: number, small: number) => {
    const n = Number(flag ?? env ?? (quick ? small : normal));
    if (!Number.isInteger(n) || n < 1) throw new Error(`expected a whole number >= 1, got ${flag ?? env}`);
    return n;
  };
  return {
    rounds: int(values.rounds, process.env.ADAGIO_BENCH_ROUNDS, 3, 1),
    jobs: int(values.jobs, process.env.ADAGIO_BENCH_JOBS, 20_000, 2_000),
    latencyJobs: int(values['latency-jobs'], undefined, 3_000, 600),
    dagRuns: int(values['dag-runs'], undefined, 500, 100),
  };
}

interface Results {
  backlog: Measured[];
  dag: Measured[];
  latency: { p50: number; p99: number; n: number }[];
}

export async function run(args: string[] = []): Promise<void> {
  const o = options(args);
  const memory = await openStore('memory');
  const postgres = await openStore('postgres');
  const peers: Peer[] = [];
  try {
    peers.push(await graphileWorker(), await bullmq(), await rowsFloor());
    const [gwDefault, gwFast] = peers[0]!.contenders as [Contender, Contender];
    const bull = peers[1]!.contenders[0]!;
    const floor = peers[2]!.contenders[0]!;
    const pgRuns = adagio('Adagio PostgreSQL', postgres);
    const pgWide = [...new Set([Math.min(2_000, o.jobs), o.jobs])].map((width) =>
      adagio('Adagio PostgreSQL', postgres, { width }),
    );
    const fastLabel = `Adagio PostgreSQL claim-ahead ${FAST_AHEAD}`;
    // add → start is the default's: a deeper queue changes nothing for a job that finds a slot free.
    const pgFast = { ...adagio(fastLabel, postgres, { runs: true }, FAST_AHEAD), latency: undefined };
    const pgFastWide = adagio(fastLabel, postgres, { width: o.jobs }, FAST_AHEAD);
    const mem = adagio('Adagio memory', memory);
    const contenders = [gwDefault, gwFast, bull, floor, mem, pgRuns, ...pgWide, pgFast, pgFastWide];
    const results = new Map<Contender, Results>(
      contenders.map((c) => [c, { backlog: [], dag: [], latency: [] }]),
    );
    const progress = (what: string) => process.stderr.write(`peers: ${what}\n`);

    // Warm-up, untimed: connections, prepared statements, the JIT.
    for (const c of contenders) await c.backlog?.(Math.min(200, o.jobs));
    for (let round = 1; round <= o.rounds; round++) {
      for (const c of contenders) {
        if (!c.backlog) continue;
        progress(`round ${round}/${o.rounds}: ${c.name}, ${o.jobs} independent jobs`);
        results.get(c)!.backlog.push(await c.backlog(o.jobs));
      }
      for (const c of contenders) {
        if (!c.latency) continue;
        progress(`round ${round}/${o.rounds}: ${c.name}, add → start at ${RATE}/s`);
        const samples = (await c.latency(RATE, o.latencyJobs)).sort((a, b) => a - b);
        results
          .get(c)!
          .latency.push({ p50: percentile(samples, 50), p99: percentile(samples, 99), n: samples.length });
      }
      for (const c of contenders) {
        if (!c.dag) continue;
        progress(`round ${round}/${o.rounds}: ${c.name}, ${o.dagRuns} DAG runs`);
        results.get(c)!.dag.push(await c.dag(o.dagRuns));
      }
    }

    const summary = (ms: Measured[]) => ({
      rate: median(ms.map((m) => m.jobs / (m.ms / 1000))),
      server: median(ms.map((m) => (m.serverUs ?? Number.NaN) / m.jobs)),
      worker: median(ms.map((m) => m.workerUs / m.jobs)),
      spread: ms.map((m) => fmt(m.jobs / (m.ms / 1000))).join(', '),
    });
    const us = (n: number) => (Number.isFinite(n) ? `${fmt(n)} µs` : '–');
    const cpuRow = (name: string, ms: Measured[]) => {
      const s = summary(ms);
      return [name, fmt(s.rate), us(s.server), us(s.worker), s.spread];
    };
    const header = ['contender', 'jobs/s', 'server CPU/job', 'worker CPU/job', 'rounds (jobs/s)'];
    const setting = `${SLOTS} slots in one process, no-op jobs, median of ${o.rounds} interleaved round(s)`;
    table(
      `${fmt(o.jobs)} independent jobs, backlog drained (${setting})`,
      header,
      contenders.filter((c) => c.backlog).map((c) => cpuRow(c.name, results.get(c)!.backlog)),
    );
    table(
      `add → start at ${RATE}/s, ${fmt(o.latencyJobs)} jobs (${setting})`,
      ['contender', 'p50', 'p99', 'rounds (p50 / p99)'],
      contenders
        .filter((c) => c.latency)
        .map((c) => {
          const l = results.get(c)!.latency;
          return [
            c.name,
            `${median(l.map((x) => x.p50)).toFixed(1)} ms`,
            `${median(l.map((x) => x.p99)).toFixed(1)} ms`,
            l.map((x) => `${x.p50.toFixed(1)} / ${x.p99.toFixed(1)}`).join(', '),
          ];
        }),
    );
    table(
      `${fmt(o.dagRuns)} runs of the 7-node DAG; BullMQ: a flow of a root over 5 children, its nearest shape (${setting})`,
      header,
      contenders.filter((c) => c.dag).map((c) => cpuRow(c.name, results.get(c)!.dag)),
    );

    const backlog = (c: Contender) => summary(results.get(c)!.backlog);
    const cpuPerJob = (c: Contender) => backlog(c).server + backlog(c).worker;
    const dagRate = (c: Contender) => summary(results.get(c)!.dag).rate;
    const p99 = (c: Contender) => median(results.get(c)!.latency.map((x) => x.p99));
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const pgShapes = [pgRuns, ...pgWide, pgFast, pgFastWide];
    /** ", claim-ahead 500" for the contenders in that setting, nothing for the default. */
    const ahead = (c: Contender) => (c === pgFast || c === pgFastWide ? `, claim-ahead ${FAST_AHEAD}` : '');
    /** A shape's name without the store's: "20,000 one-node runs", "1 run × 2,000 nodes", with its claim-ahead. */
    const shape = (c: Contender) => `${c.name.split(', ')[1] ?? `${fmt(o.jobs)} one-node runs`}${ahead(c)}`;
    table(
      `Adagio PostgreSQL against the peers (jobs/s ratio, > 1 is faster; graphile-worker fast: ${gwFast.name})`,
      ['Adagio PostgreSQL shape', 'vs graphile-worker fast', 'vs BullMQ', 'CPU/job vs graphile-worker fast'],
      [
        ...pgShapes.map((c) => [
          shape(c),
          ratio(backlog(c).rate, backlog(gwFast).rate),
          ratio(backlog(c).rate, backlog(bull).rate),
          ratio(cpuPerJob(c), cpuPerJob(gwFast)),
        ]),
        ...[pgRuns, pgFast].map((c) => [
          `7-node DAG vs BullMQ flow${ahead(c)}`,
          '–',
          ratio(dagRate(c), dagRate(bull)),
          '–',
        ]),
      ],
    );
    table(
      'What bounds it: the rows floor (a one-node run’s rows by hand, in graphile-worker fast’s batches) against the others',
      ['', 'jobs/s', 'server + worker CPU/job'],
      [
        [
          'rows floor / graphile-worker fast',
          ratio(backlog(floor).rate, backlog(gwFast).rate),
          ratio(cpuPerJob(floor), cpuPerJob(gwFast)),
        ],
        ...[pgRuns, pgFast].map((c) => [
          `Adagio PostgreSQL, ${shape(c)} / rows floor`,
          ratio(backlog(c).rate, backlog(floor).rate),
          ratio(cpuPerJob(c), cpuPerJob(floor)),
        ]),
      ],
    );
    const verdict = (ok: boolean) => (ok ? 'met' : 'missed');
    table(
      `Issue 18 "Done when" (graphile-worker fast mode here: ${gwFast.name})`,
      ['target', 'Adagio PostgreSQL', 'peer', 'result'],
      [
        ...pgShapes.map((c) => [
          `jobs/s ≥ graphile-worker fast, ${shape(c)}`,
          fmt(backlog(c).rate),
          fmt(backlog(gwFast).rate),
          verdict(backlog(c).rate >= backlog(gwFast).rate),
        ]),
        ...[pgRuns, pgFast].map((c) => [
          `7-node DAG jobs/s ≥ BullMQ flow${ahead(c)}`,
          fmt(dagRate(c)),
          fmt(dagRate(bull)),
          verdict(dagRate(c) >= dagRate(bull)),
        ]),
        [
          `add → start p99 at ${RATE}/s ≤ BullMQ`,
          `${p99(pgRuns).toFixed(1)} ms`,
          `${p99(bull).toFixed(1)} ms`,
          verdict(p99(pgRuns) <= p99(bull)),
        ],
        ...[pgRuns, pgFast].map((c) => [
          `server + worker CPU/job ≤ 2× graphile-worker fast (${shape(c)})`,
          us(cpuPerJob(c)),
          us(cpuPerJob(gwFast)),
          verdict(cpuPerJob(c) <= 2 * cpuPerJob(gwFast)),
        ]),
      ],
    );
  } finally {
    for (const p of peers) await p.close().catch((e) => console.error(`cleanup: ${(e as Error).message}`));
    await postgres.close();
    await memory.close();
  }
}
