/**
 * PostgreSQL's finish_nodes (PL/pgSQL, migrations.ts) keeps rule 5 in SQL
 * so a batch of finishes is one round trip. This test holds it to the rulebook: every
 * case of test/support/finish-cases.ts runs through the SQL function (by a
 * real finish) and through src/model, and the node, its dependent and the
 * run must end as the model says, one finish at a time and all of them in
 * one batch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  attemptStartMs,
  conclusionOf,
  finishOutcome,
  openTally,
  runStatusOf,
  statusAfterFinish,
  TRIGGER_RULES,
  type TriggerRule,
  tallied,
  triggerDecision,
  type UpstreamTally,
  upstreamOutcome,
} from '../../src/model/index.js';
import { FINISH_CASES, type FinishCase } from '../support/finish-cases.js';
import { postgresSuite } from '../support/postgres.js';

describe('PostgreSQL finish_nodes follows the model', () => {
  const db = postgresSuite();

  /** A run x → y with x RUNNING after the case's prior attempts; the finish is the caller's. */
  async function prepare(c: FinishCase) {
    const run = await db.repo.start({
      nodes: [
        { name: 'x', runtime: 'work', metadata: {}, retry: c.retry },
        { name: 'y', runtime: 'work', metadata: {}, retry: {} },
      ],
      edges: [{ source: 'x', destination: 'y' }],
    });
    // The attempts before this one, as the counters finish_nodes reads.
    await db.client.query(
      `UPDATE ${db.schema}.nodes SET fail_count = $3, error_count = $4 WHERE run_id = $1 AND name = $2`,
      [run.id, 'x', c.prior.fail, c.prior.error],
    );
    const lease = await db.repo.grantLease(60_000);
    const claimed = await db.repo.claim({ runId: run.id, node: 'x', agentId: 'a', leaseId: lease.id });
    assert.ok(claimed);
    const finish = () =>
      db.repo.finish({ runId: run.id, node: 'x', claimId: claimed.claimId, conclusion: c.conclusion });
    return { runId: run.id, lease, finish };
  }

  /** The node, its dependent and the run end as the model says. */
  async function check(c: FinishCase, runId: string) {
    const after = await db.repo.inspect(runId);
    const outcome = finishOutcome({ retry: c.retry }, c.conclusion, c.prior);
    assert.equal(outcome, c.outcome, 'the table agrees with the model');
    const x = statusAfterFinish(outcome);
    // The dependent y, judged as every backend's transition judges it (rule 14, default trigger).
    const judged =
      outcome === 'RETRY'
        ? 'WAIT'
        : triggerDecision(undefined, tallied(openTally(1), upstreamOutcome(c.conclusion)));
    const y = judged === 'READY' ? 'READY' : judged === 'UNREACHED' ? 'COMPLETED' : 'WAITING';
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
  }

  for (const c of FINISH_CASES) {
    it(`${c.conclusion} after ${c.prior.fail} FAIL and ${c.prior.error} ERROR, retry ${JSON.stringify(c.retry)}`, async () => {
      const p = await prepare(c);
      await p.finish();
      await check(c, p.runId);
      await db.repo.revokeLease(p.lease.id);
    });
  }

  it('every case finished at once (batched into one finish_nodes call) agrees with the model', async () => {
    const prepared = [];
    for (const c of FINISH_CASES) prepared.push(await prepare(c));
    // A fan-in in the same batch: both upstream nodes of z succeed together, and z is READY once.
    const fanIn = await db.repo.start({
      nodes: ['a', 'b', 'z'].map((name) => ({ name, runtime: 'work', metadata: {}, retry: {} })),
      edges: [
        { source: 'a', destination: 'z' },
        { source: 'b', destination: 'z' },
      ],
    });
    const lease = await db.repo.grantLease(60_000);
    const claims = await Promise.all(
      ['a', 'b'].map((node) => db.repo.claim({ runId: fanIn.id, node, agentId: 'a', leaseId: lease.id })),
    );
    await Promise.all([
      ...prepared.map((p) => p.finish()),
      ...claims.map((cl) =>
        db.repo.finish({
          runId: fanIn.id,
          node: cl!.node.spec.name,
          claimId: cl!.claimId,
          conclusion: 'SUCCESS',
        }),
      ),
    ]);
    for (const [i, c] of FINISH_CASES.entries()) await check(c, prepared[i]!.runId);
    const z = await db.repo.inspect(fanIn.id);
    assert.deepEqual(
      z.nodes.map((n) => [n.spec.name, n.status]),
      [
        ['a', 'COMPLETED'],
        ['b', 'COMPLETED'],
        ['z', 'READY'],
      ],
    );
    assert.equal(z.status, 'RUNNING');
    for (const p of prepared) await db.repo.revokeLease(p.lease.id);
    await db.repo.revokeLease(lease.id);
  });

  // Rule 20: a reported start is kept within [claimed at, finished at] as model attemptStartMs decides; one batch
  // called directly, so the claim and finish times are the table's.
  it('bounds a reported start as attemptStartMs does (one batch, called directly)', async () => {
    const cases: { claimed: number; finished: number; reported?: number }[] = [];
    for (const claimed of [0, 1_000])
      for (const reported of [undefined, 0, 500, 1_000, 1_500, 2_000, 2_500])
        cases.push({ claimed, finished: 2_000, reported });
    const names = cases.map((_, i) => `n${i}`);
    const run = await db.repo.start({
      nodes: names.map((name) => ({ name, runtime: 'work', metadata: {}, retry: {} })),
      edges: [],
    });
    const lease = await db.repo.grantLease(60_000);
    const claims = [];
    for (const node of names)
      claims.push(await db.repo.claim({ runId: run.id, node, agentId: 'a', leaseId: lease.id }));
    await db.client.query(
      `UPDATE ${db.schema}.nodes n SET started_at = x.at FROM unnest($2::text[], $3::bigint[]) AS x(name, at)
       WHERE n.run_id = $1 AND n.name = x.name`,
      [run.id, names, cases.map((c) => c.claimed)],
    );
    await db.client.query(`SET search_path TO ${db.schema}`);
    const res = await db.client.query<{ i: number; r: unknown }>(
      'SELECT i, r FROM finish_nodes($1, $2, $3, $4, $5, $6, $7, $8, false)',
      [
        names.map(() => run.id),
        names,
        claims.map((c) => c!.claimId),
        names.map(() => 'SUCCESS'),
        names.map(() => '{}'),
        names.map(() => Buffer.alloc(0)),
        cases.map((c) => c.finished),
        cases.map((c) => c.reported ?? null),
      ],
    );
    for (const row of res.rows) if (row.i > 0) assert.deepEqual(row.r, { ok: true });
    const { rows } = await db.client.query<{ node: string; started_at: string }>(
      'SELECT node, started_at FROM attempts WHERE run_id = $1',
      [run.id],
    );
    const started = new Map(rows.map((r) => [r.node, Number(r.started_at)]));
    cases.forEach((c, i) => {
      assert.equal(
        started.get(names[i]!),
        attemptStartMs(c.claimed, c.finished, c.reported),
        `claimed ${c.claimed}, finished ${c.finished}, reported ${c.reported}`,
      );
    });
    await db.repo.revokeLease(lease.id);
  });
});

/**
 * settle_nodes judges triggers with trigger_decision (migration 6), rule
 * 14 in SQL: held to model/rules.ts triggerDecision over every rule and every
 * tally of up to four upstream nodes.
 */
describe('PostgreSQL trigger_decision follows the model', () => {
  const db = postgresSuite();

  it('agrees on every rule and tally', async () => {
    const cases: { rule: TriggerRule; t: UpstreamTally }[] = [];
    for (const rule of TRIGGER_RULES)
      for (let total = 1; total <= 4; total++)
        for (let completed = 0; completed <= total; completed++)
          for (let succeeded = 0; succeeded <= completed; succeeded++)
            for (let failed = 0; succeeded + failed <= completed; failed++)
              cases.push({ rule, t: { total, completed, succeeded, failed } });
    // trigger_decision calls trigger_holds unqualified, as the backend's sessions (search_path) do.
    await db.client.query(`SET search_path TO ${db.schema}`);
    const res = await db.client.query<{ d: string }>(
      `SELECT trigger_decision(x.rule, x.total, x.completed, x.succeeded, x.failed) AS d
       FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::int[]) WITH ORDINALITY
         AS x(rule, total, completed, succeeded, failed, i) ORDER BY x.i`,
      [
        cases.map((c) => c.rule),
        cases.map((c) => c.t.total),
        cases.map((c) => c.t.completed),
        cases.map((c) => c.t.succeeded),
        cases.map((c) => c.t.failed),
      ],
    );
    cases.forEach((c, i) => {
      assert.equal(res.rows[i]!.d, triggerDecision(c.rule, c.t), `${c.rule} ${JSON.stringify(c.t)}`);
    });
  });
});
