import { EventEmitter, once } from 'node:events';
import { createRequire } from 'node:module';
import {
  Logger,
  type Runner,
  type RunnerOptions,
  run,
  runMigrations,
  type WorkerEvents,
} from 'graphile-worker';
import pg from 'pg';
import { benchDatabase } from '../stores.js';
import { type Contender, countdown, latencies, measure, type Peer, SLOTS, within } from './peer.js';

/**
 * graphile-worker, in a database of its own, in two modes:
 * - default: one job per row, fetched one per free slot (get_job), completed one by one;
 * - fast: from 0.17 on, a local queue of BATCH jobs fetched per statement and
 *   completions batched (its documented high-throughput settings). 0.16 has
 *   neither, so there its closest batched mode stands in: "batch jobs",
 *   array payloads of BATCH items fetched and completed as one row, each item
 *   counted as a job.
 * The devDependency is 0.17.3: 0.18 needs Node 22, 0.17 runs on Node 20.
 */
const BATCH = 500;
const VERSION: string = createRequire(import.meta.url)('graphile-worker/package.json').version;
const [MAJOR = 0, MINOR = 0] = VERSION.split('.').map(Number);
const HAS_LOCAL_QUEUE = MAJOR > 0 || MINOR >= 17;
/** 0.17's options for the fast mode; 0.16's types do not know them, hence the cast. */
const FAST_PRESET = {
  worker: { localQueue: { size: BATCH }, completeJobBatchDelay: 0, failJobBatchDelay: 0 },
} as unknown as RunnerOptions['preset'];
const silent = new Logger(() => () => {});

export async function graphileWorker(): Promise<Peer> {
  const db = await benchDatabase('graphile');
  // Our own pool, passed to every runner: it can be ended before the database is dropped (graphile-worker's
  // own pool would keep idle connections that the DROP terminates, and an unhandled pool error ends the process).
  const sql = new pg.Pool({ connectionString: db.url, max: SLOTS + 4 });
  sql.on('error', () => {}); // an idle connection cut by the server: the pool replaces it
  // graphile-worker checks a pool it is given for handlers on each client too, and warns once per runner without.
  sql.on('connect', (client) => client.on('error', () => {}));
  const options = { pgPool: sql, logger: silent };
  await runMigrations(options);

  /**
   * Starts a runner whose one task calls `onJob` with each job's payload.
   * Resolves once it listens for new jobs: run() resolves before, and a job
   * added in between would wait for the next poll (2 s), not for the worker.
   */
  const runner = async (onJob: (payload: unknown) => void, fast = false): Promise<Runner> => {
    const events: WorkerEvents = new EventEmitter();
    const listening = once(events, 'pool:listen:success');
    const started = await run({
      ...options,
      events,
      concurrency: SLOTS,
      noHandleSignals: true,
      taskList: { noop: async (payload) => onJob(payload) },
      ...(fast ? { preset: FAST_PRESET } : {}),
    });
    await within(listening, 30_000, 'graphile-worker LISTEN');
    return started;
  };

  /** Enqueues `rows` jobs in one statement (add_job is the function workerUtils.addJob calls), then times a runner draining them. */
  const drain = async (jobs: number, rows: number, payload: string, fast = false) => {
    await sql.query(`SELECT graphile_worker.add_job('noop', (${payload})) FROM generate_series(1, $1::int)`, [
      rows,
    ]);
    const finished = countdown(jobs, `graphile-worker draining ${jobs} jobs`);
    let worker: Runner | undefined;
    try {
      return await measure(jobs, db.cpu, async () => {
        worker = await runner((p) => finished.add(Array.isArray(p) ? p.length : 1), fast);
        await finished.all();
      });
    } finally {
      await worker?.stop();
    }
  };

  const addStart = (fast: boolean) => async (rate: number, count: number) => {
    const seen = latencies(count);
    const worker = await runner((p) => seen.record((p as { t0: number }).t0), fast);
    try {
      return await seen.run(rate, (t0) => worker.addJob('noop', { t0 }));
    } finally {
      await worker.stop();
    }
  };
  const plain: Contender = {
    name: `graphile-worker ${VERSION} default`,
    backlog: (jobs) => drain(jobs, jobs, `'{}'::json`),
    latency: addStart(false),
  };
  const fast: Contender = HAS_LOCAL_QUEUE
    ? {
        name: `graphile-worker ${VERSION} fast (localQueue ${BATCH}, batched completion)`,
        backlog: (jobs) => drain(jobs, jobs, `'{}'::json`, true),
        latency: addStart(true),
      }
    : {
        name: `graphile-worker ${VERSION} batch jobs (${BATCH} per row)`,
        backlog: (jobs) => {
          const rows = Math.ceil(jobs / BATCH);
          return drain(rows * BATCH, rows, `SELECT json_agg('{}'::json) FROM generate_series(1, ${BATCH})`);
        },
      };
  return {
    contenders: [plain, fast],
    close: async () => {
      await sql.end();
      await db.drop();
    },
  };
}
