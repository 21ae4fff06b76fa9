/**
 * Row writes (migration 14): a run's own updates are HOT, heap-only, so
 * concluding a run writes no index entry; a node's claim and finish keep its
 * row on its page (the pages are filled to 70%); rule 13's deadline
 * look-up (runs_open_deadlines) still finds every open run past its deadline,
 * forgets the concluded ones once their deadline passes, and keeps the open
 * deadlines of a schema upgraded from version 13.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { ulid } from 'ulid';
import { MIGRATIONS, PostgresRepository } from '../../src/backends/postgres/index.js';
import { migrate } from '../../src/backends/postgres/migrations.js';
import type { GraphSpec } from '../../src/model/index.js';
import {
  dropSchema,
  movePostgresClock,
  POSTGRES_URL,
  postgresSuite,
  requirePostgres,
  uniqueSchema,
} from '../support/postgres.js';

const oneNode = (deadline?: string): GraphSpec => ({
  nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
  edges: [],
  ...(deadline ? { deadline } : {}),
});

describe('PostgreSQL runs: row writes and the deadline look-up', () => {
  // No background sweeper: the tests sweep when they mean to.
  const db = postgresSuite({ reaperIntervalMs: 0 });

  const deadlineOpen = async (runId: string): Promise<number | null> => {
    const { rows } = await db.client.query<{ d: string | null }>(
      `SELECT deadline_open AS d FROM ${db.schema}.runs WHERE id = $1`,
      [runId],
    );
    return rows[0]!.d === null ? null : Number(rows[0]!.d);
  };

  it('concluding a run is a heap-only update: no index of runs is written', async () => {
    // A deadline and labels: runs_open_deadlines and the labels' GIN index hold this run too.
    const run = await db.repo.start(oneNode('1h'), { labels: { team: 'data' }, name: 'hot' });
    const lease = await db.repo.grantLease(60_000);
    const claim = await db.repo.claim({ runId: run.id, node: 'a', agentId: 'a', leaseId: lease.id });
    assert.ok(claim);
    // The finish's own statement, called in a transaction of this test's, so the transaction's table counters
    // are its own.
    await db.client.query('BEGIN');
    try {
      await db.client.query(`SET LOCAL search_path TO ${db.schema}`);
      const res = await db.client.query<{ i: number; r: unknown }>(
        'SELECT i, r FROM finish_nodes($1, $2, $3, $4, $5, $6, $7, $8, false)',
        [[run.id], ['a'], [claim.claimId], ['SUCCESS'], ['{}'], [Buffer.alloc(0)], [Date.now()], [null]],
      );
      assert.deepEqual(res.rows.find((r) => r.i === 1)?.r, { ok: true });
      const { rows } = await db.client.query<{ updated: string; hot: string }>(
        `SELECT pg_stat_get_xact_tuples_updated('runs'::regclass) AS updated,
                pg_stat_get_xact_tuples_hot_updated('runs'::regclass) AS hot`,
      );
      assert.equal(Number(rows[0]!.updated), 1, 'the finish updates the run row once');
      assert.equal(Number(rows[0]!.hot), 1, 'and that update is heap-only');
      await db.client.query('COMMIT');
    } catch (e) {
      await db.client.query('ROLLBACK');
      throw e;
    }
    const done = await db.repo.inspect(run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    assert.equal(done.deadlineAt, run.deadlineAt, 'the run keeps its deadline');
    await db.repo.revokeLease(lease.id);
  });

  it("a node's claim and finish leave its row on its page, a full one included", async () => {
    // 300 nodes fill more than one page: the first page is as full as inserts make it.
    const names = Array.from({ length: 300 }, (_, i) => `n${String(i).padStart(3, '0')}`);
    const run = await db.repo.start({
      nodes: names.map((name) => ({ name, runtime: 'x', metadata: {}, retry: {} })),
      edges: [],
    });
    const page = async (node: string): Promise<string> => {
      const { rows } = await db.client.query<{ p: string }>(
        `SELECT (ctid::text::point)[0]::text AS p FROM ${db.schema}.nodes WHERE run_id = $1 AND name = $2`,
        [run.id, node],
      );
      return rows[0]!.p;
    };
    const { rows: pages } = await db.client.query<{ n: string }>(
      `SELECT count(DISTINCT (ctid::text::point)[0])::text AS n FROM ${db.schema}.nodes WHERE run_id = $1`,
      [run.id],
    );
    assert.ok(Number(pages[0]!.n) > 1, 'the run spans several pages');
    const first = names[0]!;
    const before = await page(first);
    const lease = await db.repo.grantLease(60_000);
    const claim = await db.repo.claim({ runId: run.id, node: first, agentId: 'a', leaseId: lease.id });
    assert.equal(await page(first), before, 'claimed on its page');
    await db.repo.finish({ runId: run.id, node: first, claimId: claim!.claimId, conclusion: 'SUCCESS' });
    assert.equal(await page(first), before, 'finished on its page');
    await db.repo.cancel(run.id);
    await db.repo.revokeLease(lease.id);
  });

  it('a sweep past a deadline times out the open run and forgets the concluded one', async () => {
    const open = await db.repo.start(oneNode('1m'));
    const concluded = await db.repo.start(oneNode('1m'));
    const lease = await db.repo.grantLease(60_000);
    const claim = await db.repo.claim({ runId: concluded.id, node: 'a', agentId: 'a', leaseId: lease.id });
    await db.repo.finish({ runId: concluded.id, node: 'a', claimId: claim!.claimId, conclusion: 'SUCCESS' });
    assert.ok((await deadlineOpen(concluded.id)) !== null, 'concluding leaves the look-up as it was');

    await db.repo.sweepTimers();
    assert.equal((await db.repo.inspect(open.id)).status, 'WAITING', 'not before the deadline');
    assert.ok((await deadlineOpen(concluded.id)) !== null, 'kept until its deadline passes');

    await movePostgresClock(db.repo, db.schema, 2 * 60_000);
    try {
      const swept = await db.repo.sweepTimers();
      assert.equal(swept.runsTimedOut, 1, 'only the open run is cancelled');
      assert.equal((await db.repo.inspect(open.id)).conclusion, 'TIMED_OUT');
      const kept = await db.repo.inspect(concluded.id);
      assert.equal(kept.conclusion, 'SUCCESS', 'a run concluded before its deadline keeps its conclusion');
      assert.equal(kept.deadlineAt, concluded.deadlineAt);
      assert.equal(await deadlineOpen(concluded.id), null, 'the concluded run left the look-up');
      await db.repo.sweepTimers();
      assert.equal(await deadlineOpen(open.id), null, 'the timed-out run leaves it at the next sweep');
    } finally {
      await movePostgresClock(db.repo, db.schema, 0);
      await db.repo.revokeLease(lease.id);
    }
  });
});

describe('PostgreSQL migration 14 keeps open deadlines', () => {
  it('a run open with a deadline under version 13 is still timed out after the upgrade', async () => {
    await requirePostgres();
    const schema = uniqueSchema();
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await migrate(
        client,
        schema,
        MIGRATIONS.filter((m) => m.version <= 13),
      );
      // A one-node run as version 13's start wrote it, its deadline a minute after it was created.
      const id = ulid();
      const now = Date.now();
      await client.query(
        `INSERT INTO ${schema}.runs (id, created_at, edges, node_count, remaining, deadline_at)
         VALUES ($1, $2, '[]', 1, 1, $3)`,
        [id, now, now + 60_000],
      );
      await client.query(
        `INSERT INTO ${schema}.nodes (run_id, name, idx, runtime, spec, upstream, downstream, status, pending_upstream)
         VALUES ($1, 'a', 0, 'x', '{"name":"a","runtime":"x","metadata":{},"retry":{}}', '{}', '{}', 'READY', 0)`,
        [id],
      );
      const repo = await PostgresRepository.connect({
        connectionString: POSTGRES_URL,
        schema,
        reaperIntervalMs: 0,
      });
      try {
        const { rows } = await client.query<{ v: number }>(
          `SELECT max(version) AS v FROM ${schema}.schema_migrations`,
        );
        assert.equal(rows[0]!.v, MIGRATIONS[MIGRATIONS.length - 1]!.version);
        await repo.sweepTimers();
        assert.equal((await repo.inspect(id)).status, 'WAITING', 'not before the deadline');
        await movePostgresClock(repo, schema, 2 * 60_000);
        assert.equal((await repo.sweepTimers()).runsTimedOut, 1);
        assert.equal((await repo.inspect(id)).conclusion, 'TIMED_OUT');
      } finally {
        await repo.close();
      }
    } finally {
      await client.end();
      await dropSchema(schema);
    }
  });
});
