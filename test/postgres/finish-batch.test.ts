/**
 * A batch of finishes (migration 15) costs in proportion to its size:
 * finish_nodes reads each row it needs by its key and joins none of its
 * intermediate results (CTEs) to another, whose nested loop would read n × n
 * rows per batch (hash joins are off in the function, so that every table row
 * is reached by its key). auto_explain reports the plans of the function's
 * statements to this test's session with the rows each plan node read and how
 * often it ran; the batch holds every kind of call the function answers
 * (finishes that complete a run, one that completes a node with dependents,
 * a retry, a stale claim), and the answers are checked too.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GraphSpec } from '../../src/model/index.js';
import { postgresSuite } from '../support/postgres.js';

const oneNode: GraphSpec = { nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }], edges: [] };
const fanOut: GraphSpec = {
  nodes: ['a', 'b', 'c'].map((name) => ({ name, runtime: 'x', metadata: {}, retry: {} })),
  edges: [
    { source: 'a', destination: 'b' },
    { source: 'a', destination: 'c' },
  ],
};
const retried: GraphSpec = {
  nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: { fail: { maxAttempts: 2 } } }],
  edges: [],
};

interface PlanNode {
  'Node Type': string;
  'CTE Name'?: string;
  'Actual Loops'?: number;
  Plans?: PlanNode[];
}

function* planNodes(p: PlanNode): Generator<PlanNode> {
  yield p;
  for (const c of p.Plans ?? []) yield* planNodes(c);
}

describe('PostgreSQL finish_nodes: a batch costs in proportion to its size', () => {
  const db = postgresSuite({ reaperIntervalMs: 0 });

  it('reads no intermediate result once per row of another, and answers every call', async () => {
    const RUNS = 120;
    const runs = [];
    for (let i = 0; i < RUNS; i++) runs.push(await db.repo.start(oneNode));
    const fan = await db.repo.start(fanOut);
    const retry = await db.repo.start(retried);
    const stale = await db.repo.start(oneNode);
    const lease = await db.repo.grantLease(60_000);
    const claim = async (runId: string) => {
      const c = await db.repo.claim({ runId, node: 'a', agentId: 'agent', leaseId: lease.id });
      assert.ok(c, `claimed ${runId}`);
      return c.claimId;
    };
    const calls = [
      ...(await Promise.all(
        runs.map(async (r) => ({ run: r.id, claim: await claim(r.id), conclusion: 'SUCCESS' })),
      )),
      { run: fan.id, claim: await claim(fan.id), conclusion: 'SUCCESS' },
      { run: retry.id, claim: await claim(retry.id), conclusion: 'FAIL' },
      { run: stale.id, claim: `${await claim(stale.id)}-not-mine`, conclusion: 'SUCCESS' },
    ];

    const plans: PlanNode[] = [];
    const onNotice = (n: { message?: string }) => {
      // auto_explain's JSON follows "duration: … ms  plan:" on the first line.
      const json = n.message?.slice(n.message.indexOf('\n') + 1);
      if (n.message?.includes('plan:') && json) plans.push((JSON.parse(json) as { Plan: PlanNode }).Plan);
    };
    db.client.on('notice', onNotice);
    let rows: { i: number; r: Record<string, unknown> }[];
    await db.client.query('BEGIN');
    try {
      await db.client.query(`SET LOCAL search_path TO ${db.schema}`);
      await db.client.query("LOAD 'auto_explain'");
      for (const [k, v] of Object.entries({
        log_min_duration: '0',
        log_analyze: 'on',
        log_timing: 'off',
        log_nested_statements: 'on',
        log_format: 'json',
        log_level: 'notice',
      }))
        await db.client.query(`SET LOCAL auto_explain.${k} = '${v}'`);
      ({ rows } = await db.client.query<{ i: number; r: Record<string, unknown> }>(
        'SELECT i, r FROM finish_nodes($1, $2, $3, $4, $5, $6, $7, $8, false)',
        [
          calls.map((c) => c.run),
          calls.map(() => 'a'),
          calls.map((c) => c.claim),
          calls.map((c) => c.conclusion),
          calls.map(() => '{}'),
          calls.map(() => Buffer.alloc(0)),
          calls.map(() => Date.now()),
          calls.map(() => null),
        ],
      ));
      await db.client.query('COMMIT');
    } catch (e) {
      await db.client.query('ROLLBACK');
      throw e;
    } finally {
      db.client.off('notice', onNotice);
    }

    // The plans: every statement of the function was explained, and no CTE was read more than once.
    assert.ok(plans.length >= 5, `auto_explain reported the function's statements (${plans.length})`);
    const rescanned = plans
      .flatMap((p) => [...planNodes(p)])
      .filter((n) => n['Node Type'] === 'CTE Scan' && (n['Actual Loops'] ?? 0) > 1)
      .map((n) => `${n['CTE Name']} × ${n['Actual Loops']}`);
    assert.deepEqual(rescanned, [], 'no CTE scanned once per row of another');

    // The answers: one per call, in order, then one notice per run changed.
    const answers = rows.filter((r) => r.i > 0).sort((a, b) => a.i - b.i);
    assert.equal(answers.length, calls.length);
    for (const a of answers.slice(0, -1)) assert.deepEqual(a.r, { ok: true });
    assert.equal(answers.at(-1)!.r.conflict, true, 'a stale claim is refused');
    const notices = new Map(rows.filter((r) => r.i === 0).map((r) => [r.r.r as string, r.r]));
    assert.equal(notices.size, RUNS + 2, 'a notice per run changed; none for the refused call');
    for (const r of runs) assert.equal(notices.get(r.id)!.rc, 'SUCCESS');
    const f = notices.get(fan.id)!;
    assert.equal(f.rs, 'RUNNING');
    assert.deepEqual(
      (f.ch as { n: string; s: string }[]).map((c) => `${c.n}:${c.s}`),
      ['a:COMPLETED', 'b:READY', 'c:READY'],
      'the finish, then the dependents it made READY',
    );
    assert.deepEqual(f.rd, [
      ['b', 'x'],
      ['c', 'x'],
    ]);
    const t = notices.get(retry.id)!;
    assert.equal(t.rs, 'WAITING', 'back to READY with nothing completed: the run waits');
    assert.equal(t.rc, undefined);
    assert.deepEqual(t.rd, [['a', 'x']]);

    const done = await db.repo.inspect(runs[0]!.id);
    assert.equal(done.conclusion, 'SUCCESS');
    const again = await db.repo.inspect(retry.id);
    assert.equal(again.nodes.find((n) => n.spec.name === 'a')?.status, 'READY');
    await db.repo.cancel(fan.id);
    await db.repo.cancel(retry.id);
    await db.repo.cancel(stale.id);
    await db.repo.revokeLease(lease.id);
  });
});
