/**
 * The etcd backend's optimistic transactions (src/backends/etcd/optimistic.ts)
 * on contended keys, against a real etcd. Under load, writers racing on one key
 * (a workflow's head, a node-total counter shard, a fan-out item) all get
 * through, as the hand-written loops they replaced did. And a transition that
 * loses every race gives up after the store's bound with an UnavailableError
 * naming what it fought over, leaving nothing half done: the bound is lowered
 * here (maxRaceRounds) and every round lost to a writer that changes the
 * contested key just before each commit.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import type { ITxnRequest } from 'etcd3';
import { EtcdRepository } from '../../src/backends/etcd/index.js';
import { Store } from '../../src/backends/etcd/store.js';
import type { GraphSpec } from '../../src/model/types.js';
import { UnavailableError } from '../../src/protocol/errors.js';
import { etcdRepository, sharedEtcd } from '../support/etcd.js';

const node = (name: string) => ({ name, runtime: 'work', metadata: {}, retry: {} });
const graph = (names: string[]): GraphSpec => ({ nodes: names.map(node), edges: [] });
/** src → d0..d(n-1): more dependents than a finish counts down inline (INLINE_DEPENDENTS), so a fan-out item. */
const wide = (n: number): GraphSpec => {
  const deps = Array.from({ length: n }, (_, i) => `d${i}`);
  return {
    nodes: [node('src'), ...deps.map(node)],
    edges: deps.map((d) => ({ source: 'src', destination: d })),
  };
};

const original = Store.prototype.txn;

/**
 * Another writer that wins every race: before each transaction that compares a
 * key matching `contested`, it rewrites that key (same value, new revision).
 * Returns how many rounds it took.
 */
function contend(contested: RegExp): () => number {
  let rounds = 0;
  Store.prototype.txn = async function contended(this: Store, req: ITxnRequest) {
    const key = (req.compare ?? []).map((c) => c.key as Buffer).find((k) => contested.test(k.toString()));
    if (key) {
      rounds++;
      const kv = (await this.range({ key })).kvs[0];
      await original.call(this, {
        success: [{ request_put: { key, value: kv?.value ?? Buffer.from('0') } }],
      });
    }
    return original.call(this, req);
  };
  return () => rounds;
}

describe('etcd: optimistic transactions on contended keys', { concurrency: false, timeout: 180_000 }, () => {
  let repo: EtcdRepository;
  let other: EtcdRepository;
  let teardown: () => Promise<void>;
  before(async () => {
    ({ repository: repo, teardown } = await etcdRepository({ sweepIntervalMs: 0, timersIntervalMs: 0 }));
    // A second client on the same namespace: a second process racing the first.
    other = new EtcdRepository({
      hosts: (await sharedEtcd()).endpoints,
      namespace: repo.namespace,
      sweepIntervalMs: 0,
      timersIntervalMs: 0,
    });
  });
  afterEach(() => {
    Store.prototype.txn = original;
  });
  after(async () => {
    await other.close();
    await teardown();
  });

  it('48 concurrent puts of one workflow from two clients each get their own version', async () => {
    const puts = Array.from({ length: 48 }, (_, i) =>
      (i % 2 ? other : repo).putWorkflow('contended', { spec: graph([`n${i}`]) }),
    );
    const defs = await Promise.all(puts);
    assert.deepEqual(
      defs.map((d) => d.version).sort((a, b) => a - b),
      Array.from({ length: 48 }, (_, i) => i + 1),
    );
    assert.equal((await repo.listWorkflowVersions('contended')).length, 48);
    await repo.deleteWorkflow('contended');
  });

  it('starts and retention racing on the counter shards keep the node total exact', async () => {
    // 16 shards, 60 starts and 20 deletes at once from two clients: shards are shared many times over.
    const old = await Promise.all(Array.from({ length: 20 }, () => repo.start(graph(['a', 'b', 'c']))));
    await Promise.all(old.map((r) => repo.cancel(r.id)));
    const floor = Date.now() + 1;
    await new Promise((r) => setTimeout(r, 5));
    const [started, deleted] = await Promise.all([
      Promise.all(Array.from({ length: 60 }, (_, i) => (i % 2 ? other : repo).start(graph(['a', 'b'])))),
      other.deleteCompletedRunsBefore(floor),
    ]);
    assert.equal(deleted, 20);
    assert.equal(started.length, 60);
    const stats = await repo.stats();
    assert.equal(stats.runCount, 60);
    const total = Object.values(stats.nodeCounts).reduce((a, b) => a + b, 0);
    assert.equal(total, 120, 'the counters add up to the nodes stored');
    await Promise.all(started.map((r) => repo.cancel(r.id)));
    assert.equal(await repo.deleteCompletedRunsBefore(Date.now() + 1), 60);
  });

  describe('giving up', () => {
    let bounded: EtcdRepository;
    let closeBounded: () => Promise<void>;
    before(async () => {
      ({ repository: bounded, teardown: closeBounded } = await etcdRepository({
        maxRaceRounds: 3,
        sweepIntervalMs: 0,
        timersIntervalMs: 0,
      }));
    });
    after(async () => closeBounded());

    const givesUp = (what: RegExp) => (e: unknown) =>
      e instanceof UnavailableError && what.test(e.message) && /lost 3 races in a row/.test(e.message);

    it('a workflow put and delete: UnavailableError naming the workflow, the head unchanged', async () => {
      await bounded.putWorkflow('hot', { spec: graph(['a']) });
      const rounds = contend(/wh\/hot$/);
      await assert.rejects(
        bounded.putWorkflow('hot', { spec: graph(['b']) }),
        givesUp(/put of workflow "hot"/),
      );
      await assert.rejects(bounded.deleteWorkflow('hot'), givesUp(/delete of workflow "hot"/));
      assert.equal(rounds(), 6);
      Store.prototype.txn = original;
      assert.equal((await bounded.getWorkflow('hot')).version, 1);
      await bounded.deleteWorkflow('hot');
    });

    it('a start: UnavailableError naming the run and shard, and no run stored', async () => {
      const before = await bounded.stats();
      const rounds = contend(/ctr\/\d+$/);
      await assert.rejects(bounded.start(graph(['a'])), givesUp(/start of run \w+ \(counter shard \d+\)/));
      assert.equal(rounds(), 3);
      Store.prototype.txn = original;
      assert.deepEqual(await bounded.stats(), before);
    });

    it('retention: UnavailableError naming the run; the run stays until a later sweep', async () => {
      const run = await bounded.start(graph(['a']));
      await bounded.cancel(run.id);
      contend(/ctr\/\d+$/);
      await assert.rejects(
        bounded.deleteCompletedRunsBefore(Date.now() + 1),
        givesUp(new RegExp(`delete of run ${run.id}`)),
      );
      Store.prototype.txn = original;
      assert.equal((await bounded.inspect(run.id)).conclusion, 'CANCELLED');
      assert.equal(await bounded.deleteCompletedRunsBefore(Date.now() + 1), 1);
    });

    it('a fan-out: the finish stands, its item stays, and the sweeper completes it later', async () => {
      const run = await bounded.start(wide(30));
      const lease = await bounded.grantLease(30_000);
      const c = await bounded.claim({ runId: run.id, node: 'src', leaseId: lease.id, agentId: 't' });
      assert.ok(c);
      const rounds = contend(new RegExp(`k/${run.id}/d(:|%3A)src$`));
      // The finish is recorded; its follow-up gives up (logged) and leaves the work item to the sweeper.
      await bounded.finish({ runId: run.id, node: 'src', claimId: c.claimId, conclusion: 'SUCCESS' });
      assert.equal(rounds(), 3);
      Store.prototype.txn = original;
      let snap = await bounded.inspect(run.id);
      const waiting = snap.nodes.filter((n) => n.status === 'WAITING').length;
      assert.ok(waiting > 0, 'some dependents were not counted down yet');
      // A process whose clock is past the item's age resumes it from its cursor.
      const sweeper = new EtcdRepository({
        hosts: (await sharedEtcd()).endpoints,
        namespace: bounded.namespace,
        sweepIntervalMs: 0,
        timersIntervalMs: 0,
        clock: { now: () => Date.now() + 60_000 },
      });
      try {
        await sweeper.sweep();
      } finally {
        await sweeper.close();
      }
      snap = await bounded.inspect(run.id);
      assert.deepEqual(
        snap.nodes.filter((n) => n.spec.name !== 'src').map((n) => n.status),
        Array.from({ length: 30 }, () => 'READY'),
      );
      await bounded.revokeLease(lease.id);
    });
  });
});
