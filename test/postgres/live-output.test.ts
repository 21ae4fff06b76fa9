/**
 * finish_streamed (migration 10) reads whether the attempt streamed before it
 * locks anything. An append that commits between that read and the finish's
 * own lock of the node must still end up in front of the recorded output.
 * The append is held open by hand (as appendOutput holds it: node row locked,
 * live_outputs row written), so the race is forced, not timed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { POSTGRES_URL, postgresSuite } from '../support/postgres.js';

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

describe('PostgreSQL finish racing an append', () => {
  const db = postgresSuite();

  it('an append committed while the finish waits for the node is kept in front of the finish output', {
    timeout: 60_000,
  }, async () => {
    const run = await db.repo.start({
      nodes: [{ name: 'only', runtime: 'work', metadata: {}, retry: {} }],
      edges: [],
    });
    const lease = await db.repo.grantLease(60_000);
    const claimed = await db.repo.claim({ runId: run.id, node: 'only', leaseId: lease.id, agentId: 'a' });
    assert.ok(claimed);

    const appender = new pg.Client({ connectionString: POSTGRES_URL });
    await appender.connect();
    try {
      await appender.query(`SET search_path TO ${db.schema}`);
      await appender.query('BEGIN');
      await appender.query(`SELECT 1 FROM nodes WHERE run_id = $1 AND name = 'only' FOR UPDATE`, [run.id]);
      await appender.query(
        `INSERT INTO live_outputs (run_id, node, attempt, next_seq, output) VALUES ($1, 'only', 1, 1, $2)`,
        [run.id, Buffer.from('streamed ')],
      );
      const finishing = db.repo.finish({
        runId: run.id,
        node: 'only',
        claimId: claimed.claimId,
        conclusion: 'SUCCESS',
        output: Buffer.from('finished'),
      });
      // The finish has read "nothing streamed" and now waits for the node the append holds.
      for (let waited = 0; ; waited += 20) {
        const { rowCount } = await appender.query(
          // A backend blocked by this (the append's) connection is the finish. Its query column is
          // not a reliable witness: it can still show the connection's previous statement.
          'SELECT 1 FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))',
        );
        if (rowCount) break;
        assert.ok(waited < 30_000, 'the finish never waited for the node lock');
        await new Promise((r) => setTimeout(r, 20));
      }
      await appender.query('COMMIT');
      await finishing;
      const { rows } = await appender.query('SELECT count(*)::int AS n FROM live_outputs WHERE run_id = $1', [
        run.id,
      ]);
      assert.equal(rows[0].n, 0, 'the streamed row is moved into the attempt');
    } finally {
      await appender.end();
    }
    const stored = await db.repo.inspect(run.id);
    assert.equal(stored.conclusion, 'SUCCESS');
    assert.equal(text(stored.nodes[0]!.attempts[0]!.output), 'streamed finished');
  });
});
