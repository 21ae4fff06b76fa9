import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  DeleteItemCommand,
  DynamoDBClient,
  PutItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { cancelRun } from '../../src/backends/dynamodb/cancel.js';
import type { Item } from '../../src/backends/dynamodb/db.js';
import type { DynamoDbRepository } from '../../src/backends/dynamodb/index.js';
import { WaitingNodes } from '../../src/backends/dynamodb/waiting.js';
import { WrittenNodes } from '../../src/backends/dynamodb/written-nodes.js';
import type { Run } from '../../src/model/index.js';
import {
  ClaimConflictError,
  type EventQueue,
  LeaseExpiredError,
  type NodeEvent,
  NotFoundError,
  UnavailableError,
  type WatchEvent,
} from '../../src/protocol/index.js';
import {
  EXAMPLE_LAYERS,
  EXAMPLE_NODES,
  exampleDag,
  graph,
  independentNodes,
  node,
  RUNTIME,
} from '../conformance/fixtures.js';
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

/** A plain SDK client on the shared DynamoDB Local, for writing or reading items behind the repository's back. */
async function rawClient(): Promise<DynamoDBClient> {
  const server = await sharedDynamoDb();
  const client = new DynamoDBClient({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  closers.push(async () => client.destroy());
  return client;
}

/** The items of one partition, read consistently behind the repository's back. */
async function partitionOf(table: string, pk: string): Promise<Item[]> {
  const client = await rawClient();
  const r = await client.send(
    new QueryCommand({
      TableName: table,
      KeyConditionExpression: 'pk = :p',
      ExpressionAttributeValues: { ':p': { S: pk } },
      ConsistentRead: true,
    }),
  );
  return (r.Items ?? []) as Item[];
}

/** Claims a node under `leaseId`, asserting the claim was made. */
const claimer = (repo: DynamoDbRepository, leaseId: string) => async (runId: string, name: string) => {
  const c = await repo.claim({ runId, node: name, leaseId, agentId: 't' });
  assert.ok(c, `claimed ${name}`);
  return c;
};

/** a → c ← b: a join of two upstream nodes. */
const join = () =>
  graph(
    ['a', 'b', 'c'],
    [
      ['a', 'c'],
      ['b', 'c'],
    ],
  );

/** Finishes a claimed node with SUCCESS and `text` as its output. */
const succeed = (repo: DynamoDbRepository, runId: string, node: string, claimId: string, text: string) =>
  repo.finish({ runId, node, claimId, conclusion: 'SUCCESS', output: new TextEncoder().encode(text) });

/** b ← a → c: a node with two dependents. */
const fork = () =>
  graph(
    ['a', 'b', 'c'],
    [
      ['a', 'b'],
      ['a', 'c'],
    ],
  );

/** Inputs (or outputs) as text. */
const texts = (m: Record<string, Uint8Array>) =>
  Object.fromEntries(Object.entries(m).map(([k, v]) => [k, new TextDecoder().decode(v)]));

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
    const raw = await rawClient();
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

describe('dynamodb: a dependent carries its inputs', () => {
  test('a claim reads no upstream node: each success recorded itself on its dependents; after a retry it reads them', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(join());
    const lease = await repo.grantLease(120_000);
    const claimOf = (name: string) =>
      repo.claim({ runId: run.id, node: name, leaseId: lease.id, agentId: 't' });
    const a = await claimOf('a');
    const b = await claimOf('b');
    assert.ok(a && b);
    await repo.finish({
      runId: run.id,
      node: 'a',
      claimId: a.claimId,
      conclusion: 'SUCCESS',
      output: new TextEncoder().encode('from a'),
    });
    await repo.finish({ runId: run.id, node: 'b', claimId: b.claimId, conclusion: 'SUCCESS' });

    const before = repo.counters.snapshot();
    const c = await claimOf('c');
    const cost = repo.counters.snapshot().minus(before);
    assert.ok(c);
    assert.deepEqual(texts(c.node.inputs), { a: 'from a', b: '' });
    // No read of a or b, nor even of c, its header or the lease: this process made c READY moments ago, so the
    // claim starts from that item and the commit's conditions check the rest. One query: a's output (b's is empty).
    assert.equal(cost.gets, 0, 'no item read');
    assert.equal(cost.transactions, 1);
    assert.equal(cost.queries, 1, "a's output only");

    // c fails; a retry of the run puts c back: its claim reads the upstream nodes and gets the same inputs.
    await repo.finish({ runId: run.id, node: 'c', claimId: c.claimId, conclusion: 'FAIL' });
    await repo.retry(run.id);
    const again = repo.counters.snapshot();
    const c2 = await claimOf('c');
    assert.ok(c2);
    assert.deepEqual(texts(c2.node.inputs), { a: 'from a', b: '' });
    // The retry made c READY without recorded inputs: node, header and lease are read, then a and b.
    assert.equal(repo.counters.snapshot().minus(again).gets, 2, 'node, header, lease; then a and b');
  });
});

describe('dynamodb: a node item has room for what it gains after its start', () => {
  /** A join of `k` upstream nodes with `len`-character names. */
  const wideJoin = (k: number, len: number) => {
    const ups = Array.from({ length: k }, (_, i) => `${String(i).padStart(4, '0')}${'u'.repeat(len - 4)}`);
    return graph(
      [...ups.map((u) => node(u)), node('sink')],
      ups.map((u) => [u, 'sink'] as [string, string]),
    );
  };

  test('a join whose inputs and metadata could outgrow the item is refused at start, not stalled at its claim', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    // 450 upstream names of 250 characters: the start took it, then the sink's claim could never be written.
    await assert.rejects(repo.start(wideJoin(450, 250)), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'too_large');
      assert.match(e.message, /node "sink" could need \d+ bytes once running .*450 inputs/);
      return true;
    });
    assert.equal((await repo.listRuns({})).runs.length, 0, 'nothing started');
    // A join the item holds whatever it gains runs as on any backend.
    const run = await repo.start(wideJoin(100, 250));
    const lease = await repo.grantLease(120_000);
    for (const n of run.nodes.filter((x) => x.spec.name !== 'sink')) {
      const c = await repo.claim({ runId: run.id, node: n.spec.name, leaseId: lease.id, agentId: 't' });
      await repo.finish({ runId: run.id, node: n.spec.name, claimId: c!.claimId, conclusion: 'SUCCESS' });
    }
    const big = { k: ['x'.repeat(64 * 1024 - 10)] };
    const sink = await repo.claim({
      runId: run.id,
      node: 'sink',
      leaseId: lease.id,
      agentId: 't',
      metadata: big,
    });
    assert.ok(sink, 'the sink is claimed with all its inputs and 64 KiB of claim metadata');
    assert.equal(Object.keys(sink.node.inputs).length, 100);
    await repo.finish({
      runId: run.id,
      node: 'sink',
      claimId: sink.claimId,
      conclusion: 'SUCCESS',
      metadata: big,
    });
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS');
  });
});

describe('dynamodb: a claim of a node this process made READY reads nothing', () => {
  test('its commit still checks the lease, the run and the node: a lapsed lease, a cancelled run, a node taken elsewhere', async () => {
    const table = uniqueTable('ddb-blind');
    const { repository: a, teardown } = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    const { repository: b } = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    closers.push(teardown, async () => b.close());
    const spec = graph(['up', 'x'], [['up', 'x']]);
    /** A run whose `x` process a made READY (by finishing `up`): a holds x's item as written. */
    const readyX = async () => {
      const run = await a.start(spec);
      const lease = await a.grantLease(120_000);
      const up = await a.claim({ runId: run.id, node: 'up', leaseId: lease.id, agentId: 't' });
      await a.finish({ runId: run.id, node: 'up', claimId: up!.claimId, conclusion: 'SUCCESS' });
      return { run, lease };
    };

    const lapsed = await readyX();
    await b.revokeLease(lapsed.lease.id);
    await assert.rejects(
      a.claim({ runId: lapsed.run.id, node: 'x', leaseId: lapsed.lease.id, agentId: 't' }),
      LeaseExpiredError,
    );

    const cancelled = await readyX();
    await b.cancel(cancelled.run.id);
    assert.equal(
      await a.claim({ runId: cancelled.run.id, node: 'x', leaseId: cancelled.lease.id, agentId: 't' }),
      undefined,
    );

    const taken = await readyX();
    const other = await b.grantLease(120_000);
    const theirs = await b.claim({ runId: taken.run.id, node: 'x', leaseId: other.id, agentId: 'u' });
    assert.ok(theirs);
    const before = a.counters.snapshot();
    assert.equal(
      await a.claim({ runId: taken.run.id, node: 'x', leaseId: taken.lease.id, agentId: 't' }),
      undefined,
    );
    const cost = a.counters.snapshot().minus(before);
    assert.equal(cost.refused, 1, 'the blind commit was refused, then the claim read and found x taken');
    assert.equal((await a.inspect(taken.run.id)).nodes[1]!.claim?.id, theirs.claimId);
  });

  test('a batch refused for a blind claim goes once more reading everything, its other claims kept together', async () => {
    const table = uniqueTable('ddb-blind-batch');
    const { repository: a, teardown } = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    const { repository: b } = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    closers.push(teardown, async () => b.close());
    // a makes x and y READY by finishing `up`; b takes x; then a claims z, x and y at once: z goes first
    // (one batch in flight at a time), x and y share the next batch.
    const run = await a.start(
      graph(
        ['up', 'x', 'y', 'z'],
        [
          ['up', 'x'],
          ['up', 'y'],
        ],
      ),
    );
    const lease = await a.grantLease(120_000);
    const up = await a.claim({ runId: run.id, node: 'up', leaseId: lease.id, agentId: 't' });
    await a.finish({ runId: run.id, node: 'up', claimId: up!.claimId, conclusion: 'SUCCESS' });
    const other = await b.grantLease(120_000);
    assert.ok(await b.claim({ runId: run.id, node: 'x', leaseId: other.id, agentId: 'u' }));
    const before = a.counters.snapshot();
    const [z, x, y] = await Promise.all(
      ['z', 'x', 'y'].map((node) => a.claim({ runId: run.id, node, leaseId: lease.id, agentId: 't' })),
    );
    assert.ok(z, 'z claimed');
    const cost = a.counters.snapshot().minus(before);
    assert.equal(x, undefined, 'x was taken');
    assert.ok(y, 'y claimed');
    assert.equal(cost.refused, 1);
    assert.equal(cost.transactions, 3, "z's; the blind batch refused, then once more read afresh");
    assert.equal(cost.gets, 1, 'one read for the whole batch, not one per call');
  });
});

describe('dynamodb: claim records (rule 3)', () => {
  /** The lease's claim records as stored: each record's entries as `<run>/<node>`. */
  async function records(table: string, leaseId: string): Promise<string[][]> {
    return (await partitionOf(table, `lc#${leaseId}`)).map((i) =>
      (i.c?.SS ?? []).map((e) => e.split('#').slice(2).join('#')).sort(),
    );
  }

  test('a claim batch writes one record; finishes write none; the record goes once all its claims ended here', async () => {
    const { repository: repo, table, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(independentNodes(6));
    const lease = await repo.grantLease(120_000);
    const before = repo.counters.snapshot();
    const claims = await Promise.all(
      run.nodes.map((n) => repo.claim({ runId: run.id, node: n.spec.name, leaseId: lease.id, agentId: 't' })),
    );
    const txns = repo.counters.snapshot().minus(before).transactions;
    const stored = await records(table, lease.id);
    // One record per claim transaction, each naming the claims it made: all six, once.
    assert.equal(stored.length, txns, `${stored.length} records for ${txns} claim transactions`);
    assert.deepEqual(stored.flat().sort(), ['n0', 'n1', 'n2', 'n3', 'n4', 'n5']);

    const finishing = repo.counters.snapshot();
    for (const c of claims.slice(0, 5))
      await repo.finish({
        runId: run.id,
        node: c!.node.spec.name,
        claimId: c!.claimId,
        conclusion: 'SUCCESS',
      });
    const cost = repo.counters.snapshot().minus(finishing);
    // Each finish alone: node (its attempt inside), header, stats shard; no claim record item.
    assert.equal(cost.txItems, 5 * 3, `${cost.txItems} items for 5 finishes`);
    // Each reads the run header, and again after its commit (is the run complete?), but not its node: that is
    // held as its claim wrote it, its version compared at commit.
    assert.equal(cost.getKeys, 5 * 2, `${cost.getKeys} keys read for 5 finishes`);
    await repo.sweepNow();
    assert.ok((await records(table, lease.id)).flat().includes('n5'), 'n5 still runs: its record stays');
    // The last claim is released (an agent's shutdown): now every claim of every record ended.
    await repo.release([{ runId: run.id, node: claims[5]!.node.spec.name, claimId: claims[5]!.claimId }]);
    await repo.sweepNow();
    assert.deepEqual(await records(table, lease.id), []);
  });

  test("a claim transaction after one whose claims all ended here writes over that one's record: no delete", async () => {
    const { repository: repo, table, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(independentNodes(2));
    const lease = await repo.grantLease(120_000);
    const c0 = await claimer(repo, lease.id)(run.id, 'n0');
    await repo.finish({ runId: run.id, node: 'n0', claimId: c0.claimId, conclusion: 'SUCCESS' });
    assert.deepEqual(await records(table, lease.id), [['n0']], 'stale until the next sweep or claim');
    const c1 = await claimer(repo, lease.id)(run.id, 'n1');
    assert.deepEqual(await records(table, lease.id), [['n1']], "n1's record over n0's");
    const before = repo.counters.snapshot();
    await repo.sweepNow();
    assert.equal(repo.counters.snapshot().minus(before).batchWrites, 0, 'nothing left to delete');
    // The record written over is an ordinary record: a lapse orphans its claim.
    await repo.revokeLease(lease.id);
    const other = await repo.grantLease(120_000);
    const taken = await repo.claim({ runId: run.id, node: 'n1', leaseId: other.id, agentId: 'u' });
    assert.ok(taken?.orphan, 'n1 taken over as an orphan');
    assert.notEqual(taken.claimId, c1.claimId);
    assert.deepEqual(await records(table, lease.id), []);
  });

  test('a lapse orphans exactly the claims its records name that their nodes still hold, then deletes the records', async () => {
    const { repository: repo, table, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(independentNodes(3));
    const lease = await repo.grantLease(120_000);
    const claims = await Promise.all(
      run.nodes.map((n) => repo.claim({ runId: run.id, node: n.spec.name, leaseId: lease.id, agentId: 't' })),
    );
    await repo.finish({ runId: run.id, node: 'n0', claimId: claims[0]!.claimId, conclusion: 'SUCCESS' });
    await repo.revokeLease(lease.id);
    const seen = await repo.inspect(run.id);
    assert.deepEqual(
      seen.nodes.map((n) => [n.spec.name, n.status, n.attempts.length]),
      [
        ['n0', 'COMPLETED', 1],
        ['n1', 'RUNNING', 0],
        ['n2', 'RUNNING', 0],
      ],
    );
    // n1 and n2 are orphaned: another agent takes them over (rule 3); n0's stale entry changed nothing.
    const other = await repo.grantLease(120_000);
    for (const name of ['n1', 'n2']) {
      const c = await repo.claim({ runId: run.id, node: name, leaseId: other.id, agentId: 'u' });
      assert.ok(c?.orphan, `${name} taken over as an orphan`);
    }
    assert.deepEqual(await records(table, lease.id), []);
  });

  test('records whose claims ended in another process are pruned once old; those still held stay', async () => {
    const clocks: [SkewClock, SkewClock] = [new SkewClock(), new SkewClock()];
    const [a, b] = await twoProcesses(clocks);
    const run = await a.start(independentNodes(2));
    const lease = await a.grantLease(600_000);
    const c0 = await a.claim({ runId: run.id, node: 'n0', leaseId: lease.id, agentId: 't' });
    const c1 = await a.claim({ runId: run.id, node: 'n1', leaseId: lease.id, agentId: 't' });
    assert.ok(c0 && c1);
    // The finish goes through process b (an agent behind another API process): a never sees it end.
    await b.finish({ runId: run.id, node: 'n0', claimId: c0.claimId, conclusion: 'SUCCESS' });
    const table = a.table;
    await a.sweepNow();
    assert.deepEqual(await records(table, lease.id), [['n0'], ['n1']]);
    // Young records are left alone; a minute on (both clocks: the lease's heartbeat is what keeps it live).
    for (const c of clocks) c.advance(61_000);
    await a.keepAlive(lease.id);
    await a.sweepNow();
    assert.deepEqual(await records(table, lease.id), [['n1']], "n0's record pruned, n1's kept");
  });
});

describe('dynamodb: remembered node items are bounded', () => {
  const item = (name: string, bytes: number): Item => ({
    pk: { S: 'run#r' },
    sk: { S: `n#${name}` },
    v: { N: '1' },
    d: { S: JSON.stringify({ status: 'READY', pad: 'x'.repeat(bytes) }) },
  });
  const any = () => true;
  test('by count: the oldest go first', () => {
    const nodes = new WrittenNodes();
    for (let i = 0; i <= 10_000; i++) nodes.put(item(`n${i}`, 10));
    assert.equal(nodes.take({ pk: 'run#r', sk: 'n#n0' }, any), undefined);
    assert.ok(nodes.take({ pk: 'run#r', sk: 'n#n1' }, any));
    assert.ok(nodes.take({ pk: 'run#r', sk: 'n#n10000' }, any));
  });
  test('by size: 16 MiB in all, nothing over 1 MiB kept', () => {
    const nodes = new WrittenNodes();
    nodes.put(item('huge', 2 * 1024 * 1024));
    assert.equal(nodes.take({ pk: 'run#r', sk: 'n#huge' }, any), undefined);
    for (let i = 0; i < 40; i++) nodes.put(item(`big${i}`, 512 * 1024));
    // 40 × 512 KiB is 20 MiB: the first eight or so are gone, the last are kept.
    assert.equal(nodes.take({ pk: 'run#r', sk: 'n#big0' }, any), undefined);
    assert.ok(nodes.take({ pk: 'run#r', sk: 'n#big39' }, any));
  });
});

describe('dynamodb: hand-off in doubt (rule 21)', () => {
  /** Until restored, every commit lands and then fails as a lost reply would: UnavailableError. */
  function loseReplies(
    repo: DynamoDbRepository,
    error: () => Error = () => new UnavailableError('reply lost (test)'),
  ): () => void {
    const db = (repo as unknown as { ctx: { db: { commit(tx: unknown): Promise<boolean> } } }).ctx.db;
    const commit = db.commit.bind(db);
    db.commit = async (tx) => {
      const ok = await commit(tx);
      if (ok) throw error();
      return ok;
    };
    return () => {
      db.commit = commit;
    };
  }

  for (const batched of [false, true])
    test(`a finish whose reply was lost answers, on its repeat, the claims it handed off${batched ? ' (two finishes in one batch)' : ''}`, async () => {
      const { repository: repo, teardown } = await dynamoDbRepository();
      closers.push(teardown);
      const lease = await repo.grantLease(120_000);
      const offer = { leaseId: lease.id, agentIds: ['me-1', 'me-2'], runtimes: [RUNTIME] };
      const runs = await Promise.all((batched ? [1, 2] : [1]).map(() => repo.start(fork())));
      const claims = await Promise.all(
        runs.map(async (r) => {
          const c = await repo.claim({ runId: r.id, node: 'a', leaseId: lease.id, agentId: 'me-1' });
          assert.ok(c);
          return c;
        }),
      );
      const restore = loseReplies(repo);
      const finish = (c: (typeof claims)[number]) =>
        repo.finish({ runId: c.runId, node: 'a', claimId: c.claimId, conclusion: 'SUCCESS', handOff: offer });
      const first = await Promise.allSettled(claims.map(finish));
      restore();
      for (const f of first) assert.equal(f.status, 'rejected', 'the reply was lost');
      for (const c of claims) {
        const again = await finish(c);
        assert.deepEqual(
          again.handedOff.map((h) => h.node.spec.name).sort(),
          ['b', 'c'],
          'the repeat answers what the lost commit handed off',
        );
        for (const h of again.handedOff) {
          assert.equal(h.node.status, 'RUNNING');
          await repo.finish({
            runId: h.runId,
            node: h.node.spec.name,
            claimId: h.claimId,
            conclusion: 'SUCCESS',
          });
        }
        assert.equal((await repo.inspect(c.runId)).conclusion, 'SUCCESS');
      }
    });
  test('a finish whose commit landed but which failed with an error nobody repeats on gives its hand-offs back', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository();
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    const run = await repo.start(fork());
    const a = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'me' });
    assert.ok(a);
    const restore = loseReplies(repo, () => new Error('a fault the agent does not retry (test)'));
    await assert.rejects(
      repo.finish({
        runId: run.id,
        node: 'a',
        claimId: a.claimId,
        conclusion: 'SUCCESS',
        handOff: { leaseId: lease.id, agentIds: ['me-1', 'me-2'], runtimes: [RUNTIME] },
      }),
      /does not retry/,
    );
    restore();
    const deadline = Date.now() + 10_000;
    let ready: string[] = [];
    while (Date.now() < deadline) {
      ready = (await repo.inspect(run.id)).nodes.filter((n) => n.status === 'READY').map((n) => n.spec.name);
      if (ready.length === 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(ready.sort(), ['b', 'c'], 'both handed-off claims given back');
    assert.equal((await repo.inspect(run.id)).nodes.find((n) => n.spec.name === 'a')?.status, 'COMPLETED');
  });
});

describe('dynamodb: a claim committed but not answered', () => {
  test('is given back: its node READY again for any claimer, not held by nobody under a live lease', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository();
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    const run = await repo.start(graph(['a', 'b'], [['a', 'b']]));
    const a = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'me' });
    assert.ok(a);
    await repo.finish({
      runId: run.id,
      node: 'a',
      claimId: a.claimId,
      conclusion: 'SUCCESS',
      output: new TextEncoder().encode('input of b'),
    });
    // The store goes away right after b's claim commits: the reads that answer it (a's output) fail.
    const db = (
      repo as unknown as {
        ctx: {
          db: { commit(tx: unknown): Promise<boolean>; partition(...args: unknown[]): Promise<unknown> };
        };
      }
    ).ctx.db;
    const commit = db.commit.bind(db);
    const partition = db.partition.bind(db);
    let down = false;
    db.commit = async (tx) => {
      const ok = await commit(tx);
      down = true;
      return ok;
    };
    db.partition = async (...args) => {
      if (down) {
        db.commit = commit;
        db.partition = partition;
        throw new UnavailableError('store gone (test)');
      }
      return partition(...args);
    };
    await assert.rejects(
      repo.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'me' }),
      UnavailableError,
    );
    const deadline = Date.now() + 10_000;
    let again: Awaited<ReturnType<typeof repo.claim>>;
    do {
      again = await repo.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'other' });
      if (!again) await new Promise((r) => setTimeout(r, 50));
    } while (!again && Date.now() < deadline);
    assert.ok(again, 'b was given back and claimed again');
    assert.equal(again.attempt, 1);
    assert.equal(new TextDecoder().decode(again.node.inputs.a), 'input of b');
  });
});

describe('dynamodb: finishes of one run share a batch', () => {
  test('the two upstream nodes of a join, finished together, judge it once: one write with both inputs, handed off once', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(join());
    // Not its run's last node: its finish seals nothing (a transaction of its own).
    const other = await repo.start(graph(['x', 'y'], [['x', 'y']]));
    const lease = await repo.grantLease(120_000);
    const claimOf = claimer(repo, lease.id);
    const [x, a, b] = [await claimOf(other.id, 'x'), await claimOf(run.id, 'a'), await claimOf(run.id, 'b')];
    const handOff = { leaseId: lease.id, agentIds: ['t'], runtimes: [RUNTIME] };
    const finishOf = (runId: string, c: typeof a, text: string) =>
      repo.finish({
        runId,
        node: c.node.spec.name,
        claimId: c.claimId,
        conclusion: 'SUCCESS',
        output: new TextEncoder().encode(text),
        handOff: runId === run.id ? handOff : undefined,
      });
    const before = repo.counters.snapshot();
    // x goes first and alone; a and b queue behind it and go as one batch.
    const [, fa, fb] = await Promise.all([
      finishOf(other.id, x, 'x'),
      finishOf(run.id, a, 'from a'),
      finishOf(run.id, b, 'from b'),
    ]);
    const cost = repo.counters.snapshot().minus(before);
    assert.equal(cost.transactions, 2, 'x alone, then a and b together');
    assert.equal(cost.refused, 0);
    // a's plan left c WAITING; b's, made from a's write, found it READY and handed it off.
    assert.deepEqual(fa.handedOff, []);
    assert.deepEqual(
      fb.handedOff.map((h) => h.node.spec.name),
      ['c'],
    );
    const c = fb.handedOff[0]!;
    assert.deepEqual(texts(c.node.inputs), { a: 'from a', b: 'from b' });
    const inspected = await repo.inspect(run.id);
    assert.deepEqual(Object.fromEntries(inspected.nodes.map((n) => [n.spec.name, n.status])), {
      a: 'COMPLETED',
      b: 'COMPLETED',
      c: 'RUNNING',
    });
    // One header update for both finishes and the hand-off: the counts add up.
    const listed = (await repo.listRuns({})).runs.find((r) => r.id === run.id);
    assert.deepEqual(listed?.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 1, COMPLETED: 2 });
    await repo.finish({ runId: run.id, node: 'c', claimId: c.claimId, conclusion: 'SUCCESS' });
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS');
  });
});

describe('dynamodb: the finish that completes a run seals it', () => {
  test('in its own transaction: conclusion, finishedAt and failed nodes written with the counts, no second write', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    for (const conclusion of ['SUCCESS', 'FAIL'] as const) {
      const run = await repo.start(graph(['only']));
      const c = await repo.claim({ runId: run.id, node: 'only', leaseId: lease.id, agentId: 't' });
      assert.ok(c);
      const before = repo.counters.snapshot();
      await repo.finish({ runId: run.id, node: 'only', claimId: c.claimId, conclusion });
      const cost = repo.counters.snapshot().minus(before);
      assert.equal(cost.transactions, 1, 'the finish, sealing');
      assert.equal(cost.gets, 1, 'the header, read once');
      const done = await repo.inspect(run.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.conclusion, conclusion);
      assert.ok(done.finishedAt);
      const listed = (await repo.listRuns({})).runs.find((r) => r.id === run.id);
      assert.equal(listed?.conclusion, conclusion);
      assert.deepEqual(listed?.failedNodes, conclusion === 'FAIL' ? ['only'] : []);
      assert.deepEqual(listed?.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 1 });
    }
  });
});

describe('dynamodb: a success with dependents reads no header', () => {
  test('its commit still checks the run: marked cancelled meanwhile, the finish is refused as cancelled and changes nothing', async () => {
    const { repository: repo, table, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    const claimOf = claimer(repo, lease.id);

    const run = await repo.start(graph(['a', 'b'], [['a', 'b']]));
    const a = await claimOf(run.id, 'a');
    const before = repo.counters.snapshot();
    await repo.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS' });
    const cost = repo.counters.snapshot().minus(before);
    // This process holds a as its claim wrote it, and b (WAITING) as its start wrote it: it reads nothing.
    assert.equal(cost.getKeys, 0, 'neither a, b nor the header');
    assert.equal(cost.transactions, 1);
    const listed = (await repo.listRuns({})).runs.find((r) => r.id === run.id);
    assert.equal(listed?.status, 'RUNNING');
    assert.deepEqual(listed?.nodeCounts, { WAITING: 0, READY: 1, RUNNING: 0, COMPLETED: 1 });

    // A cancel that has marked the header and not yet reached the nodes (its chunks follow the mark).
    const other = await repo.start(graph(['a', 'b'], [['a', 'b']]));
    const c = await claimOf(other.id, 'a');
    const raw = await rawClient();
    await raw.send(
      new UpdateItemCommand({
        TableName: table,
        Key: { pk: { S: `run#${other.id}` }, sk: { S: '#' } },
        UpdateExpression: 'SET cx = :t',
        ExpressionAttributeValues: { ':t': { BOOL: true } },
      }),
    );
    await assert.rejects(
      repo.finish({ runId: other.id, node: 'a', claimId: c.claimId, conclusion: 'SUCCESS' }),
      (e: unknown) => e instanceof ClaimConflictError && /run cancelled/.test(e.message),
    );
    const nodes = (await repo.inspect(other.id)).nodes;
    assert.deepEqual(
      nodes.map((n) => [n.spec.name, n.status, n.attempts.length]),
      [
        ['a', 'RUNNING', 0],
        ['b', 'WAITING', 0],
      ],
    );

    // A cancel that went through: the node is no longer under the claim, and the answer says why.
    const third = await repo.start(graph(['a', 'b'], [['a', 'b']]));
    const d = await claimOf(third.id, 'a');
    await repo.cancel(third.id);
    await assert.rejects(
      repo.finish({ runId: third.id, node: 'a', claimId: d.claimId, conclusion: 'SUCCESS' }),
      (e: unknown) => e instanceof ClaimConflictError && /run cancelled/.test(e.message),
    );
  });
});

describe('dynamodb: a dependent this process wrote lately is judged from that write', () => {
  test("a join's second upstream node reads nothing: its first upstream's finish here wrote the join", async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    const claimOf = claimer(repo, lease.id);
    const run = await repo.start(join());
    const a = await claimOf(run.id, 'a');
    const b = await claimOf(run.id, 'b');
    await succeed(repo, run.id, 'a', a.claimId, 'from a');
    const before = repo.counters.snapshot();
    await succeed(repo, run.id, 'b', b.claimId, 'from b');
    const cost = repo.counters.snapshot().minus(before);
    assert.equal(cost.getKeys, 0, 'c as a judged it, b as its claim wrote it');
    assert.equal(cost.transactions, 1);
    assert.equal(cost.refused, 0);
    const c = await claimOf(run.id, 'c');
    assert.deepEqual(texts(c.node.inputs), { a: 'from a', b: 'from b' });
  });

  test('judged since by another process: the commit is refused and goes again reading it; nothing lost or judged twice', async () => {
    const [p1, p2] = await twoProcesses();
    // p1 starts a → j ← b, so holds j WAITING as its start wrote it; p2 finishes a, then p1 finishes b.
    const run = await p1.start(
      graph(
        ['a', 'b', 'j'],
        [
          ['a', 'j'],
          ['b', 'j'],
        ],
      ),
    );
    const l1 = await p1.grantLease(120_000);
    const l2 = await p2.grantLease(120_000);
    const a = await claimer(p2, l2.id)(run.id, 'a');
    await succeed(p2, run.id, 'a', a.claimId, 'from a');
    const b = await claimer(p1, l1.id)(run.id, 'b');
    const before = p1.counters.snapshot();
    await succeed(p1, run.id, 'b', b.claimId, 'from b');
    const cost = p1.counters.snapshot().minus(before);
    assert.equal(cost.refused, 1, 'judged from its own stale write of j first');
    assert.equal(cost.transactions, 2);
    const j = await claimer(p2, l2.id)(run.id, 'j');
    assert.deepEqual(texts(j.node.inputs), { a: 'from a', b: 'from b' });
    const listed = (await p1.listRuns({})).runs.find((r) => r.id === run.id);
    assert.deepEqual(listed?.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 1, COMPLETED: 2 });
  });

  test('a retry of the request refused by its own commit (a restarted DynamoDB Local forgets request tokens) is recognised: its hand-offs are answered', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const lease = await repo.grantLease(120_000);
    const run = await repo.start(fork());
    const a = await claimer(repo, lease.id)(run.id, 'a');
    type Commit = (tx: unknown, refused?: (keys: unknown[]) => void) => Promise<boolean>;
    const db = (repo as unknown as { ctx: { db: { commit: Commit } } }).ctx.db;
    const commit = db.commit.bind(db);
    // The next commit lands, and is then sent again as a new request, which its own writes refuse.
    db.commit = async (tx, refused) => {
      db.commit = commit;
      assert.equal(await commit(tx), true);
      return commit(tx, refused);
    };
    const fa = await repo.finish({
      runId: run.id,
      node: 'a',
      claimId: a.claimId,
      conclusion: 'SUCCESS',
      handOff: { leaseId: lease.id, agentIds: ['me-1', 'me-2'], runtimes: [RUNTIME] },
    });
    assert.deepEqual(fa.handedOff.map((h) => h.node.spec.name).sort(), ['b', 'c']);
    const inspected = await repo.inspect(run.id);
    assert.deepEqual(
      inspected.nodes.map((n) => [n.spec.name, n.status, n.attempts.length]),
      [
        ['a', 'COMPLETED', 1],
        ['b', 'RUNNING', 0],
        ['c', 'RUNNING', 0],
      ],
    );
    for (const h of fa.handedOff) await succeed(repo, run.id, h.node.spec.name, h.claimId, '');
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS');
  });

  test('in a batch: refused for a remembered dependent only, the batch goes again whole (not each call alone)', async () => {
    const [p1, p2] = await twoProcesses();
    const run = await p1.start(join());
    const other = await p1.start(graph(['x', 'y'], [['x', 'y']]));
    const first = await p1.start(graph(['w']));
    const l1 = await p1.grantLease(120_000);
    const l2 = await p2.grantLease(120_000);
    const a = await claimer(p2, l2.id)(run.id, 'a');
    await succeed(p2, run.id, 'a', a.claimId, 'from a');
    const claimOf = claimer(p1, l1.id);
    const [w, b, x] = [
      await claimOf(first.id, 'w'),
      await claimOf(run.id, 'b'),
      await claimOf(other.id, 'x'),
    ];
    const before = p1.counters.snapshot();
    // w goes first and alone; b (c remembered, stale) and x (y remembered, fresh) queue behind it as one batch.
    await Promise.all([
      succeed(p1, first.id, 'w', w.claimId, 'w'),
      succeed(p1, run.id, 'b', b.claimId, 'from b'),
      succeed(p1, other.id, 'x', x.claimId, 'x'),
    ]);
    const cost = p1.counters.snapshot().minus(before);
    assert.equal(cost.refused, 1);
    assert.equal(cost.transactions, 3, 'w; the batch, refused; the batch again');
    const inspected = await p1.inspect(run.id);
    assert.equal(inspected.nodes.find((n) => n.spec.name === 'c')?.status, 'READY');
    assert.equal((await p1.inspect(other.id)).nodes.find((n) => n.spec.name === 'y')?.status, 'READY');
    const c = await claimOf(run.id, 'c');
    assert.deepEqual(texts(c.node.inputs), { a: 'from a', b: 'from b' });
  });
});

describe("dynamodb: a small run's WAITING nodes are written only when first judged", () => {
  /** The sort keys of a run's partition, read behind the repository's back. */
  async function partitionKeys(table: string, runId: string): Promise<string[]> {
    return (await partitionOf(table, `run#${runId}`))
      .map((i) => i.sk!.S!)
      .filter((sk) => sk.startsWith('n#') || sk === 'w#');
  }

  /** Two processes on one table, and the table's name. */
  async function pair(): Promise<{ p1: DynamoDbRepository; p2: DynamoDbRepository; table: string }> {
    const table = uniqueTable('ddb-lazy');
    const a = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    const b = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    closers.push(a.teardown, async () => b.repository.close());
    return { p1: a.repository, p2: b.repository, table };
  }

  test('the start writes its roots and one w# item; another process judges the dependents from it, each written once', async () => {
    const { p1, p2, table } = await pair();
    const run = await p1.start(exampleDag());
    assert.deepEqual(await partitionKeys(table, run.id), ['n#a', 'n#b', 'w#'], 'no item for a WAITING node');
    // Every reader, in either process, sees the nodes the start planned.
    for (const p of [p1, p2]) {
      const seen = await p.inspect(run.id);
      assert.deepEqual(
        seen.nodes.map((n) => [n.spec.name, n.status]),
        EXAMPLE_NODES.map((n) => [n, n === 'a' || n === 'b' ? 'READY' : 'WAITING']),
      );
      assert.deepEqual(seen.edges, exampleDag().edges);
    }
    // p2 never saw the start: it reads w# once and writes each dependent when it first judges it.
    const lease = await p2.grantLease(120_000);
    const claimOf = claimer(p2, lease.id);
    const a = await claimOf(run.id, 'a');
    await succeed(p2, run.id, 'a', a.claimId, 'from a');
    assert.deepEqual(await partitionKeys(table, run.id), ['n#a', 'n#b', 'n#c', 'n#d', 'w#']);
    assert.equal((await p1.inspect(run.id)).nodes.find((n) => n.spec.name === 'd')!.status, 'WAITING');
    for (const layer of EXAMPLE_LAYERS)
      for (const name of layer) {
        if (name === 'a') continue;
        const c = await claimOf(run.id, name);
        await succeed(p2, run.id, name, c.claimId, `from ${name}`);
      }
    const done = await p1.inspect(run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    assert.deepEqual(texts(done.nodes.find((n) => n.spec.name === 'g')!.inputs), {
      e: 'from e',
      f: 'from f',
    });
    assert.deepEqual(await partitionKeys(table, run.id), [...EXAMPLE_NODES.map((n) => `n#${n}`), 'w#']);
    assert.equal((await p1.stats()).nodeCounts.COMPLETED, 7);
  });

  test('a cancel completes the nodes never written; a retry of the run puts every node back', async () => {
    const { p1, p2, table } = await pair();
    const run = await p1.start(exampleDag());
    // The other process cancels: it knows the WAITING nodes only from w#.
    const cancelled = await p2.cancel(run.id);
    assert.equal(cancelled.status, 'COMPLETED');
    assert.ok(cancelled.nodes.every((n) => n.status === 'COMPLETED'));
    assert.deepEqual(await partitionKeys(table, run.id), [...EXAMPLE_NODES.map((n) => `n#${n}`), 'w#']);
    const stats = await p1.stats();
    assert.equal(stats.nodeCounts.WAITING, 0);
    assert.equal(stats.nodeCounts.COMPLETED, 7);
    const retried = await p2.retry(run.id);
    assert.deepEqual(
      retried.nodes.map((n) => [n.spec.name, n.status]),
      EXAMPLE_NODES.map((n) => [n, n === 'a' || n === 'b' ? 'READY' : 'WAITING']),
    );
  });

  test('100 nodes never written: a cancel completes them in chunks of 30, a retry puts them back', async () => {
    const { p1, p2, table } = await pair();
    const children = Array.from({ length: 100 }, (_, i) => `c${i}`);
    const run = await p1.start(
      graph(
        ['root', ...children],
        children.map((c) => ['root', c]),
      ),
    );
    assert.deepEqual(await partitionKeys(table, run.id), ['n#root', 'w#'], 'all 100 in w#');
    const cancelled = await p2.cancel(run.id);
    assert.equal(cancelled.nodes.filter((n) => n.status === 'COMPLETED').length, 101);
    assert.equal((await partitionKeys(table, run.id)).length, 102);
    assert.equal((await p1.stats()).nodeCounts.COMPLETED, 101);
    const retried = await p1.retry(run.id);
    assert.equal(retried.nodes.filter((n) => n.status === 'WAITING').length, 100);
    assert.equal(retried.nodes.find((n) => n.spec.name === 'root')!.status, 'READY');
  });

  test('a node never written is WAITING to a claim and to an output append; a name not in the run is not found', async () => {
    const { p1, p2 } = await pair();
    const run = await p1.start(exampleDag());
    const lease = await p2.grantLease(120_000);
    assert.equal(await p2.claim({ runId: run.id, node: 'g', leaseId: lease.id, agentId: 't' }), undefined);
    await assert.rejects(
      p2.appendOutput({ runId: run.id, node: 'g', claimId: 'c', seq: 0, chunk: new Uint8Array([1]) }),
      (e: unknown) => e instanceof ClaimConflictError && /WAITING/.test(e.message),
    );
    await assert.rejects(
      p2.claim({ runId: run.id, node: 'nope', leaseId: lease.id, agentId: 't' }),
      (e: unknown) => e instanceof NotFoundError && /nope/.test(e.message),
    );
  });

  test('a run whose WAITING nodes exceed one w# item (32 KB) writes them as items, as before', async () => {
    const { p1, p2, table } = await pair();
    const big = { blob: ['x'.repeat(10_000)] };
    const spec = graph(
      ['r', ...['w1', 'w2', 'w3', 'w4'].map((n) => node(n, { metadata: big }))],
      [
        ['r', 'w1'],
        ['r', 'w2'],
        ['r', 'w3'],
        ['r', 'w4'],
      ],
    );
    const run = await p1.start(spec);
    assert.deepEqual(await partitionKeys(table, run.id), ['n#r', 'n#w1', 'n#w2', 'n#w3', 'n#w4']);
    const lease = await p2.grantLease(120_000);
    const r = await claimer(p2, lease.id)(run.id, 'r');
    await succeed(p2, run.id, 'r', r.claimId, 'from r');
    const after = await p1.inspect(run.id);
    assert.deepEqual(
      after.nodes.map((n) => n.status),
      ['COMPLETED', 'READY', 'READY', 'READY', 'READY'],
    );
  });
});

describe("dynamodb: a subscriber's poll reads one page of the ready index", () => {
  test('a backlog of 500 READY nodes from another process: each poll reads at most 200 entries, every node is delivered', async () => {
    const table = uniqueTable('ddb-poll');
    const a = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    const b = await dynamoDbRepository({ table, sweepIntervalMs: 0, pollIntervalMs: 50 });
    closers.push(a.teardown, async () => b.repository.close());
    const run = await a.repository.start(independentNodes(500));
    const ac = new AbortController();
    const before = b.repository.counters.snapshot();
    const seen = new Set<string>();
    // b never saw the start: only its polls of the index deliver (no wake-up of its own).
    for await (const ev of b.repository.subscribe({ runtimes: [RUNTIME], signal: ac.signal })) {
      assert.equal(ev.runId, run.id);
      seen.add(ev.node);
      if (seen.size === 500) break;
    }
    ac.abort();
    const cost = b.repository.counters.snapshot().minus(before);
    assert.ok(cost.queries >= 3, `a walk of 500 takes 3 pages at least (${cost.queries} queries)`);
    assert.ok(
      cost.queryItems <= cost.queries * 200,
      `${cost.queryItems} entries in ${cost.queries} queries: no poll read more than a page`,
    );
  });
});

describe('dynamodb: a subscriber that stops taking leaves the backlog in the index', () => {
  test('1,000 READY nodes, nothing taken: a page is queued, no more, until the subscriber takes; then every node', async () => {
    const table = uniqueTable('ddb-paused');
    const a = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    const b = await dynamoDbRepository({ table, sweepIntervalMs: 0, pollIntervalMs: 20 });
    closers.push(a.teardown, async () => b.repository.close());
    const run = await a.repository.start(independentNodes(1_000));
    const ac = new AbortController();
    const sub = b.repository.subscribe({ runtimes: [RUNTIME], signal: ac.signal }) as EventQueue<NodeEvent>;
    const deadline = Date.now() + 10_000;
    while (sub.queued === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 1_000)); // fifty poll intervals
    assert.ok(sub.queued > 0 && sub.queued <= 400, `${sub.queued} queued untaken`);
    const seen = new Set<string>();
    for await (const ev of sub) {
      assert.equal(ev.runId, run.id);
      seen.add(ev.node);
      if (seen.size === 1_000) break;
    }
    ac.abort();
  });
});

describe('dynamodb: work a dead process left, met by a later retry or cancel', () => {
  const byStatus = (run: Run) => {
    const by: Record<string, number> = {};
    for (const n of run.nodes) by[n.status] = (by[n.status] ?? 0) + 1;
    return by;
  };
  /** The repository's commits fail from the first one after `when` says a commit landed: its process died. */
  function dieAfter(repo: DynamoDbRepository, when: (tx: { items: Record<string, unknown>[] }) => boolean) {
    const db = (
      repo as unknown as { ctx: { db: { commit: (tx: unknown, r?: unknown) => Promise<boolean> } } }
    ).ctx.db;
    const commit = db.commit.bind(db);
    let dead = false;
    db.commit = async (tx, r) => {
      if (dead) throw new Error('the process died here (test)');
      const ok = await commit(tx, r);
      if (ok && when(tx as { items: Record<string, unknown>[] })) dead = true;
      return ok;
    };
    return () => {
      db.commit = commit;
    };
  }
  const writesSettle = (tx: { items: Record<string, unknown>[] }) =>
    tx.items.some((t) =>
      (t as { Put?: { Item?: { sk?: { S?: string } } } }).Put?.Item?.sk?.S?.startsWith('settle#'),
    );

  test('a start whose process dies before its roots are all in the ready index: a sweeper shows them', async () => {
    const [a, b] = await twoProcesses();
    // More roots than go with the header: they are written hidden, then shown in chunks after it.
    const writesHeader = (tx: { items: Record<string, unknown>[] }) =>
      tx.items.some((t) => (t as { Put?: { Item?: { sk?: { S?: string } } } }).Put?.Item?.sk?.S === '#');
    dieAfter(a, writesHeader);
    await assert.rejects(a.start(independentNodes(200, 'r')), /died/);
    const [listed] = (await b.listRuns({})).runs;
    assert.ok(listed, 'the header committed: the run exists');
    await b.sweepNow();
    await b.sweepNow();
    const ac = new AbortController();
    const seen = new Set<string>();
    const timer = setTimeout(() => ac.abort(), 20_000);
    for await (const ev of b.subscribe({ runtimes: [RUNTIME], signal: ac.signal }))
      if (ev.type === 'NODE_READY' && ev.runId === listed.id && seen.add(ev.node).size === 200) ac.abort();
    clearTimeout(timer);
    assert.equal(seen.size, 200, 'every root offered to a subscriber');
  });

  test('a cancel during a retry finishes the retry first, then concludes the run', async () => {
    const [a, b] = await twoProcesses();
    const spec = independentNodes(200, 'n');
    const run = await a.start(spec);
    await finishAll(
      a,
      run.id,
      spec.nodes.map((n) => n.name),
      'FAIL',
    );
    await a.retryStoppingAfter(run.id, 1); // marked, one part put back, then its process died
    const cancelled = await b.cancel(run.id);
    assert.equal(cancelled.conclusion, 'CANCELLED');
    await b.sweepNow();
    await b.sweepNow();
    const after = await b.inspect(run.id);
    assert.equal(after.conclusion, 'CANCELLED');
    assert.deepEqual(byStatus(after), { COMPLETED: 200 });
  });

  test('a fan-out left unfinished is done before a retry plans, not replayed over the retried dependents', async () => {
    const [a, b] = await twoProcesses();
    const kids = Array.from({ length: 41 }, (_, i) => `d${i}`);
    const edges = kids.flatMap(
      (k) =>
        [
          ['x', k],
          ['y', k],
        ] as [string, string][],
    );
    const run = await a.start(graph([node('x'), node('y'), ...kids.map((k) => node(k))], edges));
    const lease = await a.grantLease(60_000);
    const cy = await a.claim({ runId: run.id, node: 'y', leaseId: lease.id, agentId: 'a' });
    const cx = await a.claim({ runId: run.id, node: 'x', leaseId: lease.id, agentId: 'a' });
    await a.finish({ runId: run.id, node: 'y', claimId: cy!.claimId, conclusion: 'FAIL' });
    dieAfter(a, writesSettle);
    await a
      .finish({ runId: run.id, node: 'x', claimId: cx!.claimId, conclusion: 'FAIL' })
      .catch(() => undefined);
    await b.retry(run.id);
    await b.sweepNow();
    await b.sweepNow();
    const l2 = await b.grantLease(60_000);
    for (const n of ['x', 'y']) {
      const c = await b.claim({ runId: run.id, node: n, leaseId: l2.id, agentId: 'b' });
      assert.ok(c, `claimed ${n}`);
      await b.finish({ runId: run.id, node: n, claimId: c.claimId, conclusion: 'SUCCESS' });
    }
    const after = await b.inspect(run.id);
    for (const k of kids) {
      const d = after.nodes.find((x) => x.spec.name === k)!;
      assert.equal(
        d.status,
        'READY',
        `${k} READY once x and y succeeded, not completed unreached by the old outcome`,
      );
    }
  });

  test("a cancel's item swept after a retry leaves the retried run's work alone", async () => {
    const [a, b] = await twoProcesses();
    const kids = Array.from({ length: 41 }, (_, i) => `c${i}`);
    const run = await a.start(
      graph(
        [node('r'), ...kids.map((k) => node(k))],
        kids.map((k) => ['r', k] as [string, string]),
      ),
    );
    // a cancels and dies after sealing, before removing its cancel item.
    const adb = (a as unknown as { ctx: { db: { commit: (tx: unknown, r?: unknown) => Promise<boolean> } } })
      .ctx.db;
    const aCommit = adb.commit.bind(adb);
    adb.commit = async (tx, r) => {
      const items = (tx as { items: { Delete?: { Key?: { sk?: { S?: string } } } }[] }).items;
      if (items.length === 1 && items[0]!.Delete?.Key?.sk?.S?.startsWith('cancel#'))
        throw new Error('a died');
      return aCommit(tx, r);
    };
    await a.cancel(run.id).catch(() => undefined);
    adb.commit = aCommit;
    // Retried; r succeeds and b dies right after (before draining r's fan-out).
    await b.retry(run.id);
    const lease = await b.grantLease(60_000);
    const c = await b.claim({ runId: run.id, node: 'r', leaseId: lease.id, agentId: 'b' });
    const reviveB = dieAfter(b, writesSettle);
    await b
      .finish({ runId: run.id, node: 'r', claimId: c!.claimId, conclusion: 'SUCCESS' })
      .catch(() => undefined);
    reviveB();
    // a's sweeper resumes what was left: the stale cancel item, and r's fan-out.
    await a.sweepNow();
    await a.sweepNow();
    await a.sweepNow();
    const after = await a.inspect(run.id);
    assert.equal(after.conclusion, undefined);
    assert.deepEqual(byStatus(after), { COMPLETED: 1, READY: 41 }, "r's dependents are READY");
  });
});

describe('dynamodb: a workflow put during its delete', () => {
  test('a put landing while a delete removes the versions starts the name anew, and nothing of it is removed', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const spec = (runtime: string) => graph([{ ...node('a'), runtime }]);
    await repo.putWorkflow('w', { spec: spec('one') });
    await repo.putWorkflow('w', { spec: spec('two') });
    // Another client's put lands as the delete is about to remove the versions.
    const db = (repo as unknown as { ctx: { db: { partition: (...a: unknown[]) => Promise<unknown> } } }).ctx
      .db;
    const partition = db.partition.bind(db);
    let landed: number | undefined;
    db.partition = async (pk: unknown, ...rest: unknown[]) => {
      const listingVersions =
        pk === 'wf#w' && (rest[1] as { ProjectionExpression?: string })?.ProjectionExpression;
      if (listingVersions && landed === undefined) {
        landed = 0;
        landed = (await repo.putWorkflow('w', { spec: spec('three'), description: 'new' })).version;
      }
      return partition(pk, ...rest);
    };
    await repo.deleteWorkflow('w');
    assert.equal(landed, 1, 'the put after the delete starts at version 1');
    const w = await repo.getWorkflow('w');
    assert.equal(w.version, 1);
    assert.equal(w.description, 'new');
    assert.deepEqual(
      (await repo.listWorkflowVersions('w')).map((x) => x.version),
      [1],
    );
    assert.deepEqual(
      (await repo.listWorkflows()).map((x) => [x.name, x.latestVersion]),
      [['w', 1]],
    );
    const run = await repo.start(undefined, { workflow: 'w' });
    assert.equal(run.nodes[0]!.spec.runtime, 'three');
  });
});

describe('dynamodb: a deadline cancel against a retry', () => {
  test('a deadline cancel that read the run before a retry lifted its deadline leaves the retried run running', async () => {
    const { repository: repo, teardown } = await dynamoDbRepository({ sweepIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start({ ...graph([node('a')]), deadline: '1h' });
    const lease = await repo.grantLease(60_000);
    const c = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'w' });
    await repo.finish({ runId: run.id, node: 'a', claimId: c!.claimId, conclusion: 'FAIL' });
    const deadline = Date.parse((await repo.inspect(run.id)).deadlineAt!);
    await repo.retry(run.id); // runs on without a deadline (rule 13)
    // What a sweep that read the run before the retry goes on to do.
    const ctx = (repo as unknown as { ctx: Parameters<typeof cancelRun>[0] }).ctx;
    await cancelRun(ctx, run.id, async () => ({}) as Run, deadline);
    const after = await repo.inspect(run.id);
    assert.equal(after.conclusion, undefined, 'not cancelled');
    assert.equal(after.nodes[0]!.status, 'READY');
    await repo.revokeLease(lease.id);
  });
});

describe('dynamodb: a watch ends after every change of its run', () => {
  test("a run sealed by this process is reported ended after another process's last change, not before", async () => {
    const table = uniqueTable('ddb-watch-end');
    // The watching process polls rarely: another process's change reaches its watch only by the read after the seal.
    const a = await dynamoDbRepository({ table, sweepIntervalMs: 0, pollIntervalMs: 60_000 });
    const b = await dynamoDbRepository({ table, sweepIntervalMs: 0 });
    closers.push(a.teardown, async () => b.repository.close());
    const run = await a.repository.start(graph([node('x'), node('y')]));
    const lease = await a.repository.grantLease(60_000);
    const x = await b.repository.claim({ runId: run.id, node: 'x', leaseId: lease.id, agentId: 'b' });
    const y = await a.repository.claim({ runId: run.id, node: 'y', leaseId: lease.id, agentId: 'a' });
    assert.ok(x && y);
    const events: WatchEvent[] = [];
    const ac = new AbortController();
    const watching = (async () => {
      for await (const e of a.repository.watch(run.id, { signal: ac.signal })) events.push(e);
    })();
    while (events.length === 0) await new Promise((r) => setTimeout(r, 5));
    await b.repository.finish({ runId: run.id, node: 'x', claimId: x.claimId, conclusion: 'SUCCESS' });
    await a.repository.finish({ runId: run.id, node: 'y', claimId: y.claimId, conclusion: 'SUCCESS' });
    const timeout = setTimeout(() => ac.abort(), 20_000);
    await watching;
    clearTimeout(timeout);
    const last = new Map<string, string>();
    for (const e of events)
      if (e.type === 'snapshot') for (const n of e.run.nodes) last.set(n.spec.name, n.status);
      else if (e.type === 'node') last.set(e.node.spec.name, e.node.status);
    assert.deepEqual(Object.fromEntries(last), { x: 'COMPLETED', y: 'COMPLETED' });
    const end = events.at(-1)!;
    assert.ok(end.type === 'node' && end.runStatus === 'COMPLETED' && end.runConclusion === 'SUCCESS');
    await a.repository.revokeLease(lease.id);
  });
});

describe("dynamodb: runs' WAITING nodes remembered (w#) are bounded", () => {
  const waitingItem = (runId: string, names: string[], pad = 0) =>
    WaitingNodes.encode(
      runId,
      new Map(
        names.map((name, i) => [
          name,
          JSON.stringify({ i, spec: { name }, status: 'WAITING', pad: 'x'.repeat(pad) }),
        ]),
      ),
    );
  const synthesized = (w: WaitingNodes, runId: string) =>
    w.complete(runId, []).map((i) => [i.sk!.S, i.v!.N, JSON.parse(i.d!.S!).status]);

  test('a node not written is its w# entry at version 0; one written is left as read', () => {
    const w = new WaitingNodes();
    w.remember('r', waitingItem('r', ['b', 'c']));
    assert.deepEqual(synthesized(w, 'r'), [
      ['n#b', '0', 'WAITING'],
      ['n#c', '0', 'WAITING'],
    ]);
    const written: Item = { pk: { S: 'run#r' }, sk: { S: 'n#b' }, v: { N: '3' }, d: { S: '{}' } };
    assert.deepEqual(
      w.complete('r', [written]).map((i) => [i.sk!.S, i.v!.N]),
      [
        ['n#b', '3'],
        ['n#c', '0'],
      ],
    );
  });

  test('by count and by size: the oldest runs go first', () => {
    const byCount = new WaitingNodes(2);
    for (const r of ['r1', 'r2', 'r3']) byCount.remember(r, waitingItem(r, ['x']));
    assert.deepEqual(synthesized(byCount, 'r1'), [], 'r1 forgotten');
    assert.equal(synthesized(byCount, 'r3').length, 1);
    const bySize = new WaitingNodes(100, 64 * 1024);
    bySize.remember('huge', waitingItem('huge', ['x'], 5 * 1024));
    assert.deepEqual(synthesized(bySize, 'huge'), [], 'over a sixteenth of the bound: not kept');
    // 25 runs of 3 KB: 75 KB, past the bound.
    for (let k = 1; k <= 25; k++) bySize.remember(`s${k}`, waitingItem(`s${k}`, ['y'], 3_000));
    assert.equal(synthesized(bySize, 's25').length, 1);
    assert.deepEqual(synthesized(bySize, 's1'), [], 's1 forgotten once 64 KB were passed');
  });
});
