import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { DeleteItemCommand, DynamoDBClient, PutItemCommand } from '@aws-sdk/client-dynamodb';
import type { DynamoDbRepository } from '../../src/backends/dynamodb/index.js';
import { graph, independentNodes, node, RUNTIME } from '../conformance/fixtures.js';
import { SkewClock } from '../support/clock.js';
import { dynamoDbRepository, sharedDynamoDb, uniqueTable } from '../support/dynamodb.js';

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

describe('dynamodb: a process batches its concurrent starts', () => {
  test('60 concurrent starts (180 header and root items, past one transaction) share a few transactions, each its own whole run', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const spec = graph(['a', 'b', 'c'], [['a', 'b']]);
    const before = repo.counters.snapshot();
    const runs = await Promise.all(Array.from({ length: 60 }, () => repo.start(spec)));
    const cost = repo.counters.snapshot().minus(before);
    assert.equal(new Set(runs.map((r) => r.id)).size, 60, 'each start its own run');
    // Each start puts a header and two READY roots: 180 items and 60 counter updates alone, in 60 transactions.
    assert.ok(cost.transactions < 60, `${cost.transactions} transactions for 60 starts`);
    assert.ok(cost.txItems >= 180, 'every header and root was written in a transaction');
    for (const r of runs) {
      const seen = await repo.inspect(r.id);
      assert.deepEqual(
        seen.nodes.map((n) => [n.spec.name, n.status]),
        [
          ['a', 'READY'],
          ['b', 'WAITING'],
          ['c', 'READY'],
        ],
      );
    }
    const stats = await repo.stats();
    assert.equal(stats.runCount, 60);
    assert.deepEqual(stats.nodeCounts, { WAITING: 60, READY: 120, RUNNING: 0, COMPLETED: 0 });
    // Every READY root is in the ready index: a subscriber gets all 120.
    const ac = new AbortController();
    let ready = 0;
    for await (const ev of repo.subscribe({ runtimes: [RUNTIME], signal: ac.signal }))
      if (ev.type === 'NODE_READY' && ++ready === 120) ac.abort();
    assert.equal(ready, 120);
  });

  test('a start whose request id is taken at commit fails alone: its batch-mates start, and it then finds its run', async () => {
    const { repository: repo, table, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const server = await sharedDynamoDb();
    const raw = new DynamoDBClient({
      endpoint: server.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    closers.push(async () => raw.destroy());
    const key = { pk: { S: 'req' }, sk: { S: 'taken' } };
    // The id's item of a run retention is deleting: a start's check finds no run, its commit finds the id taken.
    await raw.send(new PutItemCommand({ TableName: table, Item: { ...key, run: { S: 'gone' } } }));
    // A big start in flight, so the next starts queue behind it and go as one batch.
    const big = repo.start(independentNodes(1_500, 'n'));
    const taken = repo.start(graph(['t']), { requestId: 'taken' });
    const others = await Promise.all(
      Array.from({ length: 5 }, (_, i) => repo.start(graph(['o']), { requestId: `free-${i}` })),
    );
    assert.equal(new Set(others.map((r) => r.id)).size, 5, 'its batch-mates started');
    for (const [i, r] of others.entries()) {
      assert.equal(r.requestId, `free-${i}`);
      assert.equal(
        (await repo.start(graph(['o']), { requestId: `free-${i}` })).id,
        r.id,
        'their ids are theirs',
      );
    }
    await big;
    // Retention finishes: the id is free, and the waiting start takes it.
    await raw.send(new DeleteItemCommand({ TableName: table, Key: key }));
    const run = await taken;
    assert.equal(run.requestId, 'taken');
    assert.equal((await repo.inspect(run.id)).nodes[0]!.status, 'READY');
    assert.equal((await repo.start(graph(['t']), { requestId: 'taken' })).id, run.id);
    assert.equal((await repo.stats()).runCount, 7);
  });
});
