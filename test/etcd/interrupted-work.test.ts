/**
 * Work recorded under k/<run>/ (a cancel, a fan-out, a cascade, a retry) that
 * its process left unfinished, then met by a later cancel or retry: each is
 * finished once, in order, and never replayed over what came after it. Two
 * repositories on one namespace are two processes; a transaction made to fail
 * once is where a process died.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { ITxnRequest } from 'etcd3';
import type { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec, Run } from '../../src/model/index.js';
import { SkewClock } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

async function twoProcesses(): Promise<{ clock: SkewClock; a: EtcdRepository; b: EtcdRepository }> {
  const clock = new SkewClock();
  // No sweeps or timers of their own: the tests sweep when they mean to.
  const options = { clock, sweepIntervalMs: 0, timersIntervalMs: 0 };
  const a = await etcdRepository(options);
  const b = await etcdRepository({ ...options, namespace: a.namespace });
  closers.push(a.teardown, () => b.repository.close());
  return { clock, a: a.repository, b: b.repository };
}

type Op = NonNullable<ITxnRequest['success']>[number];
const keyOf = (op: Op | undefined) =>
  String(op?.request_put?.key ?? op?.request_delete_range?.key ?? op?.request_range?.key ?? '');

/** The repository's next transaction that `matches` fails: its process died there. */
function dieAt(repo: EtcdRepository, matches: (req: ITxnRequest) => boolean): void {
  const store = (repo as unknown as { ctx: { store: { txn(r: ITxnRequest): Promise<unknown> } } }).ctx.store;
  const txn = store.txn.bind(store);
  let armed = true;
  store.txn = (req) => {
    if (armed && matches(req)) {
      armed = false;
      return Promise.reject(new Error('the process died here (test)'));
    }
    return txn(req);
  };
}
/** The removal of a finished work item: the last step of each. */
const removing = (item: string) => (req: ITxnRequest) =>
  !req.compare?.length &&
  req.success?.length === 1 &&
  !!req.success[0]!.request_delete_range &&
  keyOf(req.success[0]).includes('/k/') &&
  keyOf(req.success[0]).endsWith(item);

const n = (name: string) => ({ name, runtime: 'rt', metadata: {}, retry: {} });
const states = (r: Run) =>
  Object.fromEntries(r.nodes.map((x) => [x.spec.name, `${x.status}/${x.attempts.length}`]));

async function run1(repo: EtcdRepository, runId: string, node: string, conclusion: 'SUCCESS' | 'FAIL') {
  const lease = await repo.grantLease(60_000);
  const c = await repo.claim({ runId, node, leaseId: lease.id, agentId: 'agent' });
  assert.ok(c, `claimed ${node}`);
  await repo.finish({ runId, node, claimId: c.claimId, conclusion });
}

describe('etcd: work a dead process left, met by a later cancel or retry', { timeout: 120_000 }, () => {
  it('a cancel that died after its seal does not cancel the run again once it is retried', async () => {
    const { clock, a, b } = await twoProcesses();
    const run = await a.start({ nodes: [n('a'), n('b')], edges: [{ source: 'a', destination: 'b' }] });
    dieAt(a, removing('/cancel'));
    await assert.rejects(a.cancel(run.id));
    assert.equal((await b.inspect(run.id)).conclusion, 'CANCELLED');
    await b.retry(run.id);
    clock.advance(6_000);
    await b.sweep();
    const after = await b.inspect(run.id);
    assert.equal(after.status, 'WAITING', 'the retried run is open');
    assert.deepEqual(states(after), { a: 'READY/0', b: 'WAITING/0' });
  });

  it('a fan-out left unfinished is done before a retry plans, not counted down again after it', async () => {
    const { clock, a, b } = await twoProcesses();
    const deps = Array.from({ length: 30 }, (_, i) => `d${i}`);
    const spec: GraphSpec = {
      nodes: [n('x'), n('y'), ...deps.map(n)],
      edges: deps.flatMap((d) => [
        { source: 'x', destination: d },
        { source: 'y', destination: d },
      ]),
    };
    const run = await a.start(spec);
    // x's finish commits with its fan-out recorded; the process dies on the fan-out's first chunk.
    dieAt(a, (req) => !!req.compare?.some((c) => String(c.key).includes('/k/')));
    await run1(a, run.id, 'x', 'SUCCESS');
    await b.cancel(run.id);
    await b.retry(run.id);
    clock.advance(6_000);
    await b.sweep();
    const after = await b.inspect(run.id);
    assert.equal(states(after).y, 'READY/0');
    for (const d of deps) assert.equal(states(after)[d], 'WAITING/0', `${d} still waits for y`);
  });

  it('a cascade left unfinished is not replayed over a retry: the retried nodes run', async () => {
    const { clock, a, b } = await twoProcesses();
    const run = await a.start({
      nodes: [n('y'), n('d1'), n('d2')],
      edges: [
        { source: 'y', destination: 'd1' },
        { source: 'd1', destination: 'd2' },
      ],
    });
    dieAt(a, (req) => removing('/f:y')(req) || removing('/f%3Ay')(req));
    await run1(a, run.id, 'y', 'FAIL');
    assert.equal((await b.inspect(run.id)).conclusion, 'FAIL');
    await b.retry(run.id);
    clock.advance(6_000);
    await b.sweep();
    assert.deepEqual(states(await b.inspect(run.id)), { y: 'READY/1', d1: 'WAITING/0', d2: 'WAITING/0' });
    await run1(b, run.id, 'y', 'SUCCESS');
    await run1(b, run.id, 'd1', 'SUCCESS');
    await run1(b, run.id, 'd2', 'SUCCESS');
    const done = await b.inspect(run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    assert.deepEqual(states(done), { y: 'COMPLETED/2', d1: 'COMPLETED/1', d2: 'COMPLETED/1' });
  });

  it('a cancel during a retry finishes the retry first, then concludes the run', async () => {
    const { a, b } = await twoProcesses();
    const names = Array.from({ length: 100 }, (_, i) => `n${String(i).padStart(3, '0')}`);
    const run = await a.start({ nodes: names.map(n), edges: [] });
    await a.cancel(run.id);
    // b retries; right after its first put-back commits, a cancels.
    const store = (
      b as unknown as { ctx: { store: { txn(r: ITxnRequest): Promise<{ succeeded: boolean }> } } }
    ).ctx.store;
    const txn = store.txn.bind(store);
    let cancelled = false;
    store.txn = async (req) => {
      const res = await txn(req);
      const putBack = !!req.compare?.length && !!req.success?.some((op) => keyOf(op).includes('/o/R/'));
      if (putBack && res.succeeded && !cancelled) {
        cancelled = true;
        await a.cancel(run.id);
      }
      return res;
    };
    await b.retry(run.id);
    assert.ok(cancelled);
    const after = await a.inspect(run.id);
    assert.equal(after.conclusion, 'CANCELLED', 'the run concluded');
    assert.ok(
      after.nodes.every((x) => x.status === 'COMPLETED'),
      'every node put back was cancelled',
    );
  });

  it('a retry whose process died before removing its plan is not replayed once the run ran on', async () => {
    const { clock, a, b } = await twoProcesses();
    const run = await a.start({ nodes: [n('a'), n('b')], edges: [{ source: 'a', destination: 'b' }] });
    await run1(a, run.id, 'a', 'FAIL');
    dieAt(a, removing('/retry'));
    await assert.rejects(a.retry(run.id));
    await run1(b, run.id, 'a', 'SUCCESS');
    await run1(b, run.id, 'b', 'SUCCESS');
    clock.advance(6_000);
    await b.sweep();
    const after = await b.inspect(run.id);
    assert.equal(after.conclusion, 'SUCCESS');
    assert.deepEqual(states(after), { a: 'COMPLETED/2', b: 'COMPLETED/1' });
    const lease = await b.grantLease(60_000);
    assert.equal(await b.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'agent' }), undefined);
  });

  it('a deadline cancel that read the run before a retry lifted its deadline leaves the retried run running', async () => {
    const { a } = await twoProcesses();
    const run = await a.start({ nodes: [n('a')], edges: [], deadline: '1h' });
    await run1(a, run.id, 'a', 'FAIL');
    await a.retry(run.id); // runs on without a deadline (rule 13)
    // What a sweep that read the deadline item before the retry goes on to do.
    const ctx = (a as unknown as { ctx: unknown }).ctx;
    const { cancelRun } = await import('../../src/backends/etcd/cancel.js');
    await cancelRun(ctx as Parameters<typeof cancelRun>[0], run.id, true);
    const after = await a.inspect(run.id);
    assert.equal(after.conclusion, undefined, 'not cancelled');
    assert.deepEqual(states(after), { a: 'READY/1' });
  });
});
