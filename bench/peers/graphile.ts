import { EventEmitter, once } from 'node:events';
import { Logger, type Runner, run, runMigrations, type WorkerEvents } from 'graphile-worker';
import pg from 'pg';
import { benchDatabase } from '../stores.js';
import { type Contender, countdown, latencies, measure, type Peer, SLOTS, within } from './peer.js';

/**
 * graphile-worker 0.16.6 (0.17+ needs Node 22; this project runs on Node 20),
 * in a database of its own. Two modes:
 * - default: one job per row, fetched one per free slot (get_job), completed one by one;
 * - batch: its closest batched mode in 0.16, which has neither localQueue nor
 *   batched completion (both 0.17): "batch jobs", array payloads of
 *   BATCH items, fetched and completed as one row. Each item counts as a job.
 */
const BATCH = 500;
const silent = new Logger(() => () => {});

export async function graphileWorker(): Promise<Peer> {
  const db = await benchDatabase('graphile');
  const options = { connectionString: db.url, logger: silent };
  await runMigrations(options);
  const sql = new pg.Client({ connectionString: db.url });
  await sql.connect();

  /**
   * Starts a runner whose one task calls `onJob` with each job's payload.
   * Resolves once it listens for new jobs: run() resolves before, and a job
   * added in between would wait for the next poll (2 s), not for the worker.
   */
  const runner = async (onJob: (payload: unknown) => void): Promise<Runner> => {
    const events: WorkerEvents = new EventEmitter();
    const listening = once(events, 'pool:listen:success');
    const started = await run({
      ...options,
      events,
      concurrency: SLOTS,
      maxPoolSize: SLOTS + 4,
      noHandleSignals: true,
      taskList: { noop: async (payload) => onJob(payload) },
    });
    await within(listening, 30_000, 'graphile-worker LISTEN');
    return started;
  };

  /** Enqueues `rows` jobs in one statement (add_job is the function workerUtils.addJob calls), then times a runner draining them. */
  const drain = async (jobs: number, rows: number, payload: string) => {
    await sql.query(`SELECT graphile_worker.add_job('noop', (${payload})) FROM generate_series(1, $1::int)`, [
      rows,
    ]);
    const finished = countdown(jobs, `graphile-worker draining ${jobs} jobs`);
    let worker: Runner | undefined;
    try {
      return await measure(jobs, db.cpu, async () => {
        worker = await runner((p) => finished.add(Array.isArray(p) ? p.length : 1));
        await finished.all();
      });
    } finally {
      await worker?.stop();
    }
  };

  const plain: Contender = {
    name: 'graphile-worker 0.16.6 default',
    backlog: (jobs) => drain(jobs, jobs, `'{}'::json`),
    latency: async (rate, count) => {
      const seen = latencies(count);
      const worker = await runner((p) => seen.record((p as { t0: number }).t0));
      try {
        return await seen.run(rate, (t0) => worker.addJob('noop', { t0 }));
      } finally {
        await worker.stop();
      }
    },
  };
  const batched: Contender = {
    name: `graphile-worker 0.16.6 batch jobs (${BATCH} per row)`,
    backlog: (jobs) => {
      const rows = Math.ceil(jobs / BATCH);
      return drain(rows * BATCH, rows, `SELECT json_agg('{}'::json) FROM generate_series(1, ${BATCH})`);
    },
  };
  return {
    contenders: [plain, batched],
    close: async () => {
      await sql.end();
      await db.drop();
    },
  };
}
