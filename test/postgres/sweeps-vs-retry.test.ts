/**
 * A retry (rule 15) racing the store's own sweeps: a deadline sweep that read
 * a run as past its deadline before a retry lifted the deadline leaves it
 * running (rule 13), and retention that picked a completed run before a retry
 * reopened it leaves it stored. Each race is forced with a row lock held by a
 * plain client, and the waiting statement is seen waiting before going on.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import type { GraphSpec } from '../../src/model/index.js';
import { movePostgresClock, POSTGRES_URL, postgresSuite } from '../support/postgres.js';

const oneNode = (deadline?: string): GraphSpec => ({
  nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
  edges: [],
  ...(deadline ? { deadline } : {}),
});

/** Resolves once `n` backends wait on a lock (the race's second party is at the point the test means). */
async function waitingOnLocks(client: pg.Client, n: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`,
    );
    if (rows[0]!.n >= n) return;
    if (Date.now() > deadline) assert.fail(`no backend waited on a lock (${rows[0]!.n} of ${n})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('PostgreSQL sweeps against a retry', () => {
  // No background sweeps: the tests run them.
  const db = postgresSuite({ reaperIntervalMs: 0, catchUpIntervalMs: 0 });

  it('a deadline sweep does not cancel a run retried after the sweep read it', {
    timeout: 60_000,
  }, async () => {
    const { repo, schema } = db;
    const held = await repo.start(oneNode('1m'));
    const retried = await repo.start(oneNode('1m'));
    const lease = await repo.grantLease(60_000);
    const claim = await repo.claim({ runId: retried.id, node: 'a', agentId: 'w', leaseId: lease.id });
    assert.ok(claim);
    await movePostgresClock(repo, schema, 2 * 60_000); // both past their deadline, both open
    const lock = new pg.Client({ connectionString: POSTGRES_URL });
    await lock.connect();
    try {
      // The sweep reads both ids, then waits to cancel the first while the second concludes and is retried.
      await lock.query('BEGIN');
      await lock.query(`SELECT 1 FROM ${schema}.runs WHERE id = $1 FOR UPDATE`, [held.id]);
      const sweep = repo.sweepTimers();
      await waitingOnLocks(db.client, 1);
      await repo.finish({ runId: retried.id, node: 'a', claimId: claim.claimId, conclusion: 'FAIL' });
      const reopened = await repo.retry(retried.id);
      assert.equal(reopened.deadlineAt, undefined, 'a retried run runs on without a deadline');
      await lock.query('COMMIT');
      await sweep;
    } finally {
      await lock.end();
      await movePostgresClock(repo, schema, 0);
    }
    assert.equal((await repo.inspect(held.id)).conclusion, 'TIMED_OUT', 'the other run timed out');
    const after = await repo.inspect(retried.id);
    assert.equal(after.conclusion, undefined, 'the retried run runs on');
    assert.equal(after.nodes[0]!.status, 'READY');
    await repo.revokeLease(lease.id);
  });

  it('retention does not delete a run a retry reopened while it waited', { timeout: 60_000 }, async () => {
    const { repo, schema } = db;
    const run = await repo.start(oneNode());
    const lease = await repo.grantLease(60_000);
    const claim = await repo.claim({ runId: run.id, node: 'a', agentId: 'w', leaseId: lease.id });
    await repo.finish({ runId: run.id, node: 'a', claimId: claim!.claimId, conclusion: 'FAIL' });
    const lock = new pg.Client({ connectionString: POSTGRES_URL });
    await lock.connect();
    let deleted: Promise<number>;
    try {
      // The retry locks the run, then waits for its nodes; retention then picks the (completed) run and waits.
      await lock.query('BEGIN');
      await lock.query(`SELECT 1 FROM ${schema}.nodes WHERE run_id = $1 FOR UPDATE`, [run.id]);
      const retry = repo.retry(run.id);
      await waitingOnLocks(db.client, 1);
      deleted = repo.deleteCompletedRunsBefore(Date.now() + 60_000);
      await waitingOnLocks(db.client, 2);
      await lock.query('COMMIT');
      assert.equal((await retry).status, 'WAITING');
    } finally {
      await lock.end();
    }
    await deleted; // (it may delete the other test's concluded run)
    const after = await repo.inspect(run.id); // NotFoundError had retention deleted it
    assert.equal(after.nodes[0]!.status, 'READY', 'the reopened run is kept');
    assert.ok(await repo.claim({ runId: run.id, node: 'a', agentId: 'w', leaseId: lease.id }), 'and runs');
    await repo.revokeLease(lease.id);
  });
});
