/**
 * Runs past what one etcd request or answer holds. A retry goes in steps
 * behind a work item (rule 15): the item names what the retry was given, not
 * its plan, so a retry of a run of any size fits etcd's request limit (a
 * recorded plan of 14,000 nodes passed 1.5 MiB and the retry was refused),
 * and whoever finishes a retry whose process died plans it again from the
 * run, putting back exactly what is left. A run's read past gRPC's 64 MiB
 * answer (its attempts' outputs) goes in pages at one revision.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { ITxnRequest } from 'etcd3';
import type { GraphSpec } from '../../src/model/index.js';
import { SkewClock } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

const independent = (count: number): GraphSpec => ({
  nodes: Array.from({ length: count }, (_, i) => ({
    name: `node-${String(i).padStart(5, '0')}`,
    runtime: 'rt',
    metadata: {},
    retry: {},
  })),
  edges: [],
});

const countBy = (statuses: string[]) => {
  const by: Record<string, number> = {};
  for (const s of statuses) by[s] = (by[s] ?? 0) + 1;
  return by;
};

describe('etcd: runs past what one request or answer holds', { timeout: 600_000 }, () => {
  it('a cancelled run of 14,000 nodes is retried: every node READY again', async () => {
    const { repository: repo, teardown } = await etcdRepository({ sweepIntervalMs: 0, timersIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(independent(14_000));
    await repo.cancel(run.id);
    const retried = await repo.retry(run.id);
    assert.equal(retried.status, 'WAITING', 'every node went back, none claimed yet (rule 7)');
    assert.deepEqual(countBy(retried.nodes.map((n) => n.status)), { READY: 14_000 });
  });

  it('a run holding more output than one gRPC answer (70 attempts of 1 MiB) is inspected, retried and cancelled', async () => {
    const { repository: repo, teardown } = await etcdRepository({ sweepIntervalMs: 0, timersIntervalMs: 0 });
    closers.push(teardown);
    const run = await repo.start(independent(70));
    const lease = await repo.grantLease(120_000);
    const output = new Uint8Array(1024 * 1024).fill(120);
    for (const n of run.nodes) {
      const c = await repo.claim({ runId: run.id, node: n.spec.name, leaseId: lease.id, agentId: 't' });
      await repo.finish({
        runId: run.id,
        node: n.spec.name,
        claimId: c!.claimId,
        conclusion: 'FAIL',
        output,
      });
    }
    const failed = await repo.inspect(run.id);
    assert.equal(failed.conclusion, 'FAIL');
    assert.equal(failed.nodes.flatMap((n) => n.attempts).length, 70, 'every attempt read');
    const retried = await repo.retry(run.id);
    assert.deepEqual(countBy(retried.nodes.map((n) => n.status)), { READY: 70 });
    const cancelled = await repo.cancel(run.id);
    assert.equal(cancelled.conclusion, 'CANCELLED');
  });

  it('a retry whose process died after its first put-back is finished by another from the run as it stands', async () => {
    const clock = new SkewClock();
    const options = { clock, sweepIntervalMs: 0, timersIntervalMs: 0 };
    const a = await etcdRepository(options);
    const b = await etcdRepository({ ...options, namespace: a.namespace });
    closers.push(a.teardown, () => b.repository.close());
    const run = await a.repository.start(independent(100));
    await a.repository.cancel(run.id);
    // a's second put-back transaction fails: its process died there, 20 nodes put back.
    const store = (a.repository as unknown as { ctx: { store: { txn(r: ITxnRequest): Promise<unknown> } } })
      .ctx.store;
    const txn = store.txn.bind(store);
    let putBacks = 0;
    store.txn = (req) => {
      const putBack =
        !!req.compare?.length &&
        !!req.success?.some((op) => String(op.request_put?.key ?? '').includes('/o/R/'));
      if (putBack && ++putBacks === 2) return Promise.reject(new Error('the process died here (test)'));
      return txn(req);
    };
    await assert.rejects(a.repository.retry(run.id), /died here/);
    const half = await b.repository.inspect(run.id);
    assert.deepEqual(countBy(half.nodes.map((n) => n.status)), { READY: 20, COMPLETED: 80 });
    clock.advance(6_000);
    await b.repository.sweep();
    await b.repository.sweep();
    const done = await b.repository.inspect(run.id);
    assert.deepEqual(countBy(done.nodes.map((n) => n.status)), { READY: 100 });
    assert.equal(done.status, 'WAITING');
    const lease = await b.repository.grantLease(60_000);
    const c = await b.repository.claim({
      runId: run.id,
      node: 'node-00099',
      leaseId: lease.id,
      agentId: 'b',
    });
    assert.ok(c, 'the retry is over: its nodes are claimable');
  });
});
