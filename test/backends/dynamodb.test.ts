import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { DynamoDbRepository } from '../../src/backends/dynamodb/index.js';
import { graph, independentNodes, node } from '../conformance/fixtures.js';
import { SkewClock } from '../support/clock.js';
import { dynamoDbRepository, uniqueTable } from '../support/dynamodb.js';

/**
 * DynamoDB-only behaviour the conformance suite cannot show, since it needs
 * two processes on one table: a marked retry (more nodes than one
 * transaction) whose process dies midway is finished by another process's
 * sweeper; and the time rules' timers fire once however many processes
 * sweep them. Each "process" is a repository of its own on the shared table.
 */
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function twoProcesses(
  clocks?: [SkewClock, SkewClock],
): Promise<[DynamoDbRepository, DynamoDbRepository]> {
  const table = uniqueTable('ddb-two');
  // No timer of their own: the test says when each sweeps.
  const a = await dynamoDbRepository({ table, sweepIntervalMs: 0, clock: clocks?.[0] });
  const b = await dynamoDbRepository({ table, sweepIntervalMs: 0, clock: clocks?.[1] });
  closers.push(a.teardown, async () => b.repository.close());
  return [a.repository, b.repository];
}

/** Claims and finishes every named node with `conclusion`, a few at a time. */
async function finishAll(
  repo: DynamoDbRepository,
  runId: string,
  names: string[],
  conclusion: 'FAIL' | 'SUCCESS',
) {
  const lease = await repo.grantLease(120_000);
  for (let at = 0; at < names.length; at += 25)
    await Promise.all(
      names.slice(at, at + 25).map(async (name) => {
        const c = await repo.claim({ runId, node: name, leaseId: lease.id, agentId: 'test' });
        assert.ok(c, `claimed ${name}`);
        await repo.finish({ runId, node: name, claimId: c.claimId, conclusion });
      }),
    );
  await repo.revokeLease(lease.id);
}

describe('dynamodb: two processes on one table', () => {
  test('a retry of more nodes than one transaction, its process dead after the first part, is finished by a sweeper', async () => {
    const [a, b] = await twoProcesses();
    const spec = independentNodes(200, 'n');
    const run = await a.start(spec);
    const names = spec.nodes.map((n) => n.name);
    await finishAll(a, run.id, names, 'FAIL');
    assert.equal((await a.inspect(run.id)).conclusion, 'FAIL');

    // Process a marks the retry and puts back one part (90 nodes), then "dies".
    await a.retryStoppingAfter(run.id, 1);
    const lease = await b.grantLease(120_000);
    const half = await b.inspect(run.id);
    assert.equal(half.conclusion, undefined, 'the marked run is open again');
    const stuck = half.nodes.find((n) => n.status === 'READY')!;
    assert.equal(
      await b.claim({ runId: run.id, node: stuck.spec.name, leaseId: lease.id, agentId: 'b' }),
      undefined,
      'claims wait while the retry is marked',
    );
    assert.ok(
      half.nodes.some((n) => n.status === 'COMPLETED'),
      'some nodes are not back yet',
    );

    // b's sweeper sees the work item twice (the first sighting only starts its grace) and finishes the retry.
    await b.sweepNow();
    await b.sweepNow();
    const done = await b.inspect(run.id);
    assert.deepEqual(
      done.nodes.filter((n) => n.status !== 'READY').map((n) => n.spec.name),
      [],
      'every node is READY again',
    );
    assert.equal(done.conclusion, undefined);
    const c = await b.claim({ runId: run.id, node: stuck.spec.name, leaseId: lease.id, agentId: 'b' });
    assert.ok(c, 'claims go on once the retry is finished');
    assert.equal(c.attempt, 2);
    await b.revokeLease(lease.id);
  });

  test('node timeouts swept by two processes at once end each attempt exactly once', async () => {
    const clocks: [SkewClock, SkewClock] = [new SkewClock(), new SkewClock()];
    const [a, b] = await twoProcesses(clocks);
    const names = Array.from({ length: 12 }, (_, i) => `t${i}`);
    const run = await a.start(graph(names.map((n) => ({ ...node(n), timeout: '1m' }))));
    const lease = await a.grantLease(120_000);
    for (const name of names)
      assert.ok(await a.claim({ runId: run.id, node: name, leaseId: lease.id, agentId: 'slow' }));
    for (const c of clocks) c.advance(61_000);
    const fired = await Promise.all([a.sweepTimers(), b.sweepTimers(), a.sweepTimers(), b.sweepTimers()]);
    assert.ok(fired.reduce((x, y) => x + y, 0) >= names.length, 'the timers were due to both processes');
    const done = await b.inspect(run.id);
    assert.ok(done.conclusion, 'the run concluded');
    for (const n of done.nodes) {
      assert.equal(n.attempts.length, 1, `${n.spec.name} has one attempt`);
      assert.equal(n.attempts[0]!.conclusion, 'ERROR');
      assert.ok(n.attempts[0]!.metadata['adagio.timeout'] !== undefined, 'ended by its timeout');
    }
    await a.revokeLease(lease.id).catch(() => undefined);
  });
});
