import pg from 'pg';
import { AgentPool } from '../src/agent/index.js';
import { PostgresRepository } from '../src/backends/postgres/index.js';
import type { Runtime } from '../src/runtimes/runtime.js';
import { sevenNode } from './graphs.js';
import { percentile, report, timed } from './report.js';
import { BENCH_POSTGRES_URL } from './stores.js';

/**
 * PostgreSQL backend:
 * - no-op nodes/s end to end (runs started while an AgentPool drains them) for
 *   1,000 runs of the 7-node DAG, against the server's simple-transaction
 *   ceiling measured in the same run (single-row UPDATEs at the same
 *   concurrency). A node needs at least two transactions (claim, finish), so
 *   ceiling/2 is the best a backend could do; the target is >= 50% of it.
 * - ListRuns first-page latency with 100,000 stored runs (target < 50 ms).
 *
 * Uses ADAGIO_BENCH_POSTGRES_URL, else ADAGIO_TEST_POSTGRES_URL, else the
 * local server; everything lives in a temporary schema, dropped at the end.
 */
const URL = BENCH_POSTGRES_URL;
const CONCURRENCY = 16;
const RUNS = 1_000;
const STORED_RUNS = 100_000;

const noop: Runtime = { name: 'noop', run: async () => ({ conclusion: 'SUCCESS' }) };

export async function run(): Promise<void> {
  const schema = `adagio_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: URL });
  try {
    await admin.connect();
  } catch (e) {
    throw new Error(
      `PostgreSQL at ${URL} is not reachable (${(e as Error).message}); set ADAGIO_BENCH_POSTGRES_URL`,
    );
  }
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    const repo = await PostgresRepository.connect({
      connectionString: URL,
      schema,
      poolSize: CONCURRENCY + 4,
    });
    try {
      await drain(repo, 100); // warm-up: JIT, connections, plans
      // The ceiling right before and right after the end-to-end run, averaged: on a shared machine the
      // load moves, and the ratio should compare the two under the same conditions.
      const before = await updateCeiling(schema, CONCURRENCY);
      const e2e = await drain(repo, RUNS);
      const after = await updateCeiling(schema, CONCURRENCY);
      const ceiling = (before + after) / 2;
      const rate = (RUNS * 7) / (e2e.ms / 1000);
      const listing = await listLatency(admin, repo, schema);
      report('postgres', [
        [
          `7-node DAG x ${RUNS.toLocaleString('en-US')} runs (AgentPool, ${CONCURRENCY} slots, no-op)`,
          `${fmt(rate)} nodes/s`,
          `${RUNS * 7} nodes in ${e2e.ms.toFixed(0)} ms`,
        ],
        [
          `simple-transaction ceiling (single-row UPDATE, ${CONCURRENCY} clients)`,
          `${fmt(ceiling)} tx/s`,
          `mean of ${fmt(before)} just before and ${fmt(after)} just after the end-to-end run`,
        ],
        ['ratio of nodes/s to ceiling/2', `${((100 * rate) / (ceiling / 2)).toFixed(0)}%`, 'target >= 50%'],
        [
          `ListRuns first page, ${STORED_RUNS.toLocaleString('en-US')} stored runs`,
          `${listing.p50.toFixed(1)} ms`,
          `p50; p95 ${listing.p95.toFixed(1)} ms; target < 50 ms`,
        ],
        [
          'ListRuns page in a time window, via cursor',
          `${listing.windowP50.toFixed(1)} ms`,
          `p50; p95 ${listing.windowP95.toFixed(1)} ms`,
        ],
        ['Stats with the same history', `${listing.statsP50.toFixed(1)} ms`, 'p50'],
      ]);
    } finally {
      await repo.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {});
    await admin.end();
  }
}

/** Starts `runs` runs while an AgentPool drains them; resolves when every node has finished. */
async function drain(repo: PostgresRepository, runs: number): Promise<{ ms: number }> {
  const pool = new AgentPool({ repository: repo, runtimes: [noop], concurrency: CONCURRENCY });
  await pool.start();
  try {
    const { ms } = await timed(async () => {
      const before = pool.counters.finished.SUCCESS;
      let next = 0;
      // A few concurrent starters, as API clients would be.
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < runs) {
            next++;
            await repo.start(sevenNode('noop'));
          }
        }),
      );
      const deadline = Date.now() + 600_000;
      while (pool.counters.finished.SUCCESS - before < runs * 7) {
        if (Date.now() > deadline) throw new Error('benchmark runs did not complete within 10 minutes');
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    return { ms };
  } finally {
    await pool.stop({ graceMs: 5_000 });
  }
}

/** Single-row UPDATE transactions per second, `concurrency` clients, about three seconds. */
async function updateCeiling(schema: string, concurrency: number): Promise<number> {
  const pool = new pg.Pool({ connectionString: URL, max: concurrency });
  try {
    await pool.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await pool.query(`DROP TABLE IF EXISTS ${schema}.ceiling`);
    await pool.query(`CREATE TABLE ${schema}.ceiling (id int PRIMARY KEY, v bigint NOT NULL)`);
    await pool.query(`INSERT INTO ${schema}.ceiling SELECT g, 0 FROM generate_series(1, 10000) g`);
    const round = async (ms: number) => {
      let count = 0;
      const end = Date.now() + ms;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (Date.now() < end) {
            const id = 1 + Math.floor(Math.random() * 10_000);
            await pool.query(`UPDATE ${schema}.ceiling SET v = v + 1 WHERE id = $1`, [id]);
            count++;
          }
        }),
      );
      return count / (ms / 1000);
    };
    await round(500); // warm-up
    return await round(3_000);
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${schema}.ceiling`).catch(() => {});
    await pool.end();
  }
}

/** Bulk-loads completed runs (7 nodes each) with generate_series, then times listing and stats. */
async function listLatency(admin: pg.Client, repo: PostgresRepository, schema: string) {
  const base = Date.now() - STORED_RUNS * 1000;
  await admin.query(
    `INSERT INTO ${schema}.runs (id, created_at, edges, node_count, remaining, conclusion)
     SELECT 'BENCH' || lpad(g::text, 21, '0'), $1::bigint + g * 1000, '[]', 7, 0, 'SUCCESS'
     FROM generate_series(1, $2::int) g`,
    [base, STORED_RUNS],
  );
  await admin.query(
    `INSERT INTO ${schema}.nodes (run_id, name, idx, runtime, spec, upstream, downstream, status, pending_upstream,
       attempt_count, started_at, finished_at)
     SELECT 'BENCH' || lpad(g::text, 21, '0'), n, i, 'noop',
       jsonb_build_object('name', n, 'runtime', 'noop', 'metadata', '{}'::jsonb, 'retry', '{}'::jsonb),
       '{}', '{}', 'COMPLETED', 0, 1, $1::bigint + g * 1000, $1::bigint + g * 1000 + 5
     FROM generate_series(1, $2::int) g, unnest(array['a','b','c','d','e','f','g']) WITH ORDINALITY AS x(n, i)`,
    [base, STORED_RUNS],
  );
  await admin.query(
    `UPDATE ${schema}.counters SET runs = runs + $1, nodes = nodes + $1 * 7 WHERE shard = 0`,
    [STORED_RUNS],
  );
  await admin.query(`ANALYZE ${schema}.runs; ANALYZE ${schema}.nodes`);
  const sample = async (fn: () => Promise<unknown>) => {
    for (let i = 0; i < 5; i++) await fn();
    const times: number[] = [];
    for (let i = 0; i < 50; i++) times.push((await timed(fn)).ms);
    times.sort((a, b) => a - b);
    return { p50: percentile(times, 50), p95: percentile(times, 95) };
  };
  const first = await sample(() => repo.listRuns({ limit: 100 }));
  const mid = base + (STORED_RUNS / 2) * 1000;
  const firstWindowPage = await repo.listRuns({ since: mid - 3_600_000, until: mid, limit: 100 });
  const window = await sample(() =>
    repo.listRuns({ since: mid - 3_600_000, until: mid, limit: 100, cursor: firstWindowPage.nextCursor }),
  );
  const stats = await sample(() => repo.stats());
  return { ...first, windowP50: window.p50, windowP95: window.p95, statsP50: stats.p50 };
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
