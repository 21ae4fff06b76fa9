/**
 * The time rules' items on etcd (timing.ts): a delayed retry, a node's
 * timeout and a run's deadline are each a key under d/<due>/, ordered by when
 * it falls due, so the once-a-second sweep reads what is due and nothing
 * else, however many runs wait with deadlines. An item is deleted where its
 * work goes otherwise and its due time is known (a finish, a release, a
 * retry); one left behind is dropped by the sweep once due.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ITxnRequest, ITxnResponse } from 'etcd3';
import type { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec, NodeSpec } from '../../src/model/index.js';
import { skewed } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';

const one = (node: Partial<NodeSpec> = {}, graph: Partial<GraphSpec> = {}): GraphSpec => ({
  nodes: [{ name: 'a', runtime: 'timers', metadata: {}, retry: {}, ...node }],
  edges: [],
  ...graph,
});

interface WhiteBox {
  ctx: {
    keys: {
      timersDue(now: number): { key: Buffer; range_end: Buffer };
      workItem(run: string, item: string): Buffer;
    };
    store: {
      txn(r: ITxnRequest): Promise<ITxnResponse>;
      range(r: { key: Buffer; range_end?: Buffer; count_only?: boolean }): Promise<{ count: string }>;
      writeAll(ops: unknown[]): Promise<unknown>;
    };
  };
}

describe('etcd: timed work items are read when due', { timeout: 300_000 }, () => {
  let backend: Awaited<ReturnType<typeof skewed<EtcdRepository>>>;
  let repo: EtcdRepository;
  let box: WhiteBox['ctx'];
  /** Timed items read by ranges over d/ (white box: counted at the repository's store). */
  let timedRead = 0;
  const timers = async () =>
    Number(
      (await box.store.range({ ...box.keys.timersDue(Number.MAX_SAFE_INTEGER / 2), count_only: true })).count,
    );

  before(async () => {
    backend = await skewed((clock) => etcdRepository({ clock, timersIntervalMs: 0, sweepIntervalMs: 0 }));
    repo = backend.repository;
    box = (repo as unknown as WhiteBox).ctx;
    const prefix = box.keys.timersDue(0).key.toString();
    const txn = box.store.txn.bind(box.store);
    box.store.txn = async (req) => {
      const res = await txn(req);
      req.success?.forEach((op, i) => {
        if (op.request_range && String(op.request_range.key).startsWith(prefix))
          timedRead += res.responses[i]?.response_range?.kvs.length ?? 0;
      });
      return res;
    };
  });
  after(async () => {
    await backend?.teardown();
  });

  const claimOf = async (runId: string) => {
    const lease = await repo.grantLease(60_000);
    const claim = await repo.claim({ runId, node: 'a', agentId: 'agent', leaseId: lease.id });
    assert.ok(claim, 'claimed');
    return { lease, ref: { runId, node: 'a', claimId: claim.claimId } };
  };

  it('a sweep reads only the items due: 200 runs a day from their deadline cost it nothing', async () => {
    for (let i = 0; i < 200; i += 50)
      await Promise.all(Array.from({ length: 50 }, () => repo.start(one({}, { deadline: '24h' }))));
    const soon = await repo.start(one({}, { deadline: '1s' }));
    timedRead = 0;
    await backend.advance(2_000);
    assert.equal(timedRead, 1, 'one item read: the run whose deadline passed');
    assert.equal((await repo.inspect(soon.id)).conclusion, 'TIMED_OUT');
    assert.equal(await timers(), 200, 'the others wait');
    timedRead = 0;
    await backend.advance(0);
    assert.equal(timedRead, 0, 'nothing due, nothing read');
  });

  it('a finish and a release delete the timeout item their claim wrote', async () => {
    const before = await timers();
    const finished = await repo.start(one({ timeout: '1h' }));
    const a = await claimOf(finished.id);
    assert.equal(await timers(), before + 1, 'the claim wrote its timeout item');
    await repo.finish({ ...a.ref, conclusion: 'SUCCESS' });
    assert.equal(await timers(), before, 'the finish deleted it');
    const released = await repo.start(one({ timeout: '1h' }));
    const b = await claimOf(released.id);
    assert.equal(await timers(), before + 1);
    assert.deepEqual(await repo.release([b.ref]), [true]);
    assert.equal(await timers(), before, 'the release deleted it');
    await repo.revokeLease(a.lease.id);
    await repo.revokeLease(b.lease.id);
  });

  it("a retry's delay is an item until due; the sweep releases the node then and the item goes", async () => {
    const before = await timers();
    const run = await repo.start(one({ retry: { fail: { maxAttempts: 2, backoff: { initial: '1h' } } } }));
    const a = await claimOf(run.id);
    await repo.finish({ ...a.ref, conclusion: 'FAIL' });
    assert.equal(await timers(), before + 1, 'the delayed retry waits as an item');
    await backend.advance(3_600_000 + 1_000); // and sweeps
    assert.equal(await timers(), before, 'released, the item gone');
    const again = await repo.claim({ runId: run.id, node: 'a', agentId: 'agent', leaseId: a.lease.id });
    assert.equal(again?.attempt, 2, 'claimable again');
    await repo.revokeLease(a.lease.id);
  });

  it('an item whose work went otherwise is dropped once due, changing nothing', async () => {
    const before = await timers();
    const run = await repo.start(one({}, { deadline: '1s' }));
    const a = await claimOf(run.id);
    await repo.finish({ ...a.ref, conclusion: 'SUCCESS' });
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS');
    assert.equal(await timers(), before + 1, 'the deadline item outlives its run');
    await backend.advance(2_000);
    assert.equal(await timers(), before, 'dropped once due');
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS', 'the run as it was');
    await repo.revokeLease(a.lease.id);
  });

  it("an older store's timed item under k/<run>/ is done by the sweeper once due", async () => {
    const run = await repo.start(one());
    const legacy = box.keys.workItem(run.id, 'deadline');
    await box.store.writeAll([
      { request_put: { key: legacy, value: Buffer.from(JSON.stringify({ at: 0, due: 1 })) } },
    ]);
    await repo.sweep();
    assert.equal((await repo.inspect(run.id)).conclusion, 'TIMED_OUT', 'cancelled by its deadline');
    assert.equal(
      Number((await box.store.range({ key: legacy, count_only: true })).count),
      0,
      'the item gone',
    );
  });
});
