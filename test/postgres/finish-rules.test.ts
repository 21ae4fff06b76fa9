/**
 * PostgreSQL's finish_attempt (PL/pgSQL, migrations.ts) keeps rule 5 in SQL
 * so a finish is one round trip. This test holds it to the rulebook: every
 * case of test/support/finish-cases.ts runs through the SQL function (by a
 * real finish) and through src/model, and the node, its dependent and the
 * run must end as the model says.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { PostgresRepository } from '../../src/backends/postgres/index.js';
import {
  conclusionOf,
  countedDown,
  finishOutcome,
  runStatusOf,
  statusAfterFinish,
  unreached,
} from '../../src/model/index.js';
import { FINISH_CASES } from '../support/finish-cases.js';
import { POSTGRES_URL, postgresRepository } from '../support/postgres.js';

describe('PostgreSQL finish_attempt follows the model', () => {
  let repo: PostgresRepository;
  let schema: string;
  let teardown: () => Promise<void>;
  const client = new pg.Client({ connectionString: POSTGRES_URL });

  before(async () => {
    ({ repository: repo, schema, teardown } = await postgresRepository());
    await client.connect();
  });
  after(async () => {
    await client.end();
    await teardown();
  });

  for (const c of FINISH_CASES) {
    it(`${c.conclusion} after ${c.prior.fail} FAIL and ${c.prior.error} ERROR, retry ${JSON.stringify(c.retry)}`, async () => {
      const run = await repo.start({
        nodes: [
          { name: 'x', runtime: 'work', metadata: {}, retry: c.retry },
          { name: 'y', runtime: 'work', metadata: {}, retry: {} },
        ],
        edges: [{ source: 'x', destination: 'y' }],
      });
      // The attempts before this one, as the counters finish_attempt reads.
      await client.query(
        `UPDATE ${schema}.nodes SET fail_count = $3, error_count = $4 WHERE run_id = $1 AND name = $2`,
        [run.id, 'x', c.prior.fail, c.prior.error],
      );
      const lease = await repo.grantLease(60_000);
      const claimed = await repo.claim({ runId: run.id, node: 'x', agentId: 'a', leaseId: lease.id });
      assert.ok(claimed);
      await repo.finish({ runId: run.id, node: 'x', claimId: claimed.claimId, conclusion: c.conclusion });
      const after = await repo.inspect(run.id);

      const outcome = finishOutcome({ retry: c.retry }, c.conclusion, c.prior);
      assert.equal(outcome, c.outcome, 'the table agrees with the model');
      const x = statusAfterFinish(outcome);
      const y =
        outcome === 'SUCCEEDED'
          ? countedDown({ pending: 1, status: 'WAITING' as const }).status
          : outcome === 'FAILED' && unreached('WAITING')
            ? 'COMPLETED'
            : 'WAITING';
      assert.deepEqual(
        after.nodes.map((n) => [n.spec.name, n.status]),
        [
          ['x', x],
          ['y', y],
        ],
      );
      const completed = [x, y].filter((s) => s === 'COMPLETED').length;
      assert.equal(after.status, runStatusOf({ total: 2, completed, running: 0 }));
      assert.equal(
        after.conclusion,
        completed === 2 ? conclusionOf({ cancelled: false, failed: outcome === 'FAILED' }) : undefined,
      );
      await repo.revokeLease(lease.id);
    });
  }
});
