/**
 * Wide nodes on etcd: more dependents (or upstreams) than one etcd
 * transaction may hold (128 ops). A success counts its dependents down in
 * chunks; every dependent becomes READY exactly when all its upstreams
 * succeeded, even while a second process resumes the same work at once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AgentPool } from '../../src/agent/index.js';
import { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec, Run } from '../../src/model/types.js';
import type { Runtime } from '../../src/runtimes/runtime.js';
import { etcdRepository, sharedEtcd } from '../support/etcd.js';

const WIDTH = 300;
const node = (name: string) => ({ name, runtime: 'noop', metadata: {}, retry: {} });

/** src → m0..m299 → join: src has 300 dependents, join 300 upstreams. */
function diamond(): GraphSpec {
  const mids = Array.from({ length: WIDTH }, (_, i) => `m${i}`);
  return {
    nodes: [node('src'), ...mids.map(node), node('join')],
    edges: mids.flatMap((m) => [
      { source: 'src', destination: m },
      { source: m, destination: 'join' },
    ]),
  };
}

const statusOf = (run: Run, name: string) => run.nodes.find((n) => n.spec.name === name)!.status;

describe('etcd: wide fan-out and fan-in', { concurrency: false, timeout: 180_000 }, () => {
  let repo: EtcdRepository;
  let teardown: () => Promise<void>;
  before(async () => {
    ({ repository: repo, teardown } = await etcdRepository({ sweepIntervalMs: 0 }));
  });
  after(async () => teardown());

  it('300 dependents become READY on one success; a join of 300 becomes READY on the last', async () => {
    const run = await repo.start(diamond());
    const lease = await repo.grantLease(30_000);
    const claimAndFinish = async (name: string) => {
      const c = await repo.claim({ runId: run.id, node: name, leaseId: lease.id, agentId: 't' });
      assert.ok(c, `${name} is claimable`);
      await repo.finish({
        runId: run.id,
        node: name,
        claimId: c.claimId,
        conclusion: 'SUCCESS',
        output: Buffer.from(`out-${name}`),
      });
      return c;
    };
    // A second process (its clock a minute ahead, so its sweeper takes the work item at once)
    // resumes the same fan-out while the finishing one works it.
    const other = new EtcdRepository({
      hosts: (await sharedEtcd()).endpoints,
      namespace: repo.namespace,
      sweepIntervalMs: 0,
      clock: { now: () => Date.now() + 60_000 },
    });
    try {
      let sweeping = true;
      const sweeper = (async () => {
        while (sweeping) await other.sweep();
      })();
      await claimAndFinish('src');
      sweeping = false;
      await sweeper;
    } finally {
      await other.close();
    }
    let snap = await repo.inspect(run.id);
    for (let i = 0; i < WIDTH; i++) assert.equal(statusOf(snap, `m${i}`), 'READY', `m${i} READY`);
    assert.equal(statusOf(snap, 'join'), 'WAITING');

    for (let i = 0; i < WIDTH - 1; i++) await claimAndFinish(`m${i}`);
    snap = await repo.inspect(run.id);
    assert.equal(statusOf(snap, 'join'), 'WAITING', 'join waits for its last upstream');
    await claimAndFinish(`m${WIDTH - 1}`);
    snap = await repo.inspect(run.id);
    assert.equal(statusOf(snap, 'join'), 'READY');

    const joined = await claimAndFinish('join');
    assert.equal(Object.keys(joined.node.inputs).length, WIDTH);
    for (let i = 0; i < WIDTH; i++)
      assert.equal(Buffer.from(joined.node.inputs[`m${i}`]!).toString(), `out-m${i}`);
    const done = await repo.inspect(run.id);
    assert.equal(done.status, 'COMPLETED');
    assert.equal(done.conclusion, 'SUCCESS');
    for (const n of done.nodes)
      assert.deepEqual(
        n.attempts.map((a) => a.conclusion),
        ['SUCCESS'],
      );
    await repo.revokeLease(lease.id);
  });

  it('two wide sources sharing 300 dependents, drained by an agent pool: each runs once, after both', async () => {
    const order: string[] = [];
    const noop: Runtime = {
      name: 'noop',
      run: async (ctx) => {
        order.push(ctx.node.spec.name);
        return { conclusion: 'SUCCESS' };
      },
    };
    const mids = Array.from({ length: WIDTH }, (_, i) => `m${i}`);
    const spec: GraphSpec = {
      nodes: [node('a'), node('b'), ...mids.map(node)],
      edges: mids.flatMap((m) => [
        { source: 'a', destination: m },
        { source: 'b', destination: m },
      ]),
    };
    const run = await repo.start(spec);
    const pool = new AgentPool({ repository: repo, runtimes: [noop], concurrency: 8 });
    await pool.start();
    try {
      const deadline = Date.now() + 120_000;
      let snap = await repo.inspect(run.id);
      while (snap.status !== 'COMPLETED' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        snap = await repo.inspect(run.id);
      }
      assert.equal(snap.conclusion, 'SUCCESS');
      for (const n of snap.nodes) assert.equal(n.attempts.length, 1, `${n.spec.name} ran once`);
      assert.equal(order.length, WIDTH + 2);
      const firstMid = order.findIndex((n) => n.startsWith('m'));
      assert.ok(
        order.indexOf('a') < firstMid && order.indexOf('b') < firstMid,
        'dependents after both sources',
      );
    } finally {
      await pool.stop({ graceMs: 2_000 });
    }
  });
});
