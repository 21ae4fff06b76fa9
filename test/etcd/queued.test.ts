/**
 * etcd's queuedNodes: WAITING plus READY nodes as stats() counts them, without
 * stats' count of every stored run (etcd counts a range key by key), so the
 * API's admission control, which reads it on the start path every 500 ms at
 * most, does not pay for the store's history.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ITxnRequest, ITxnResponse } from 'etcd3';
import { Admission } from '../../src/api/admission.js';
import type { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec } from '../../src/model/index.js';
import { etcdRepository } from '../support/etcd.js';

const chain: GraphSpec = {
  nodes: ['a', 'b', 'c'].map((name) => ({ name, runtime: 'q', metadata: {}, retry: {} })),
  edges: [
    { source: 'a', destination: 'b' },
    { source: 'b', destination: 'c' },
  ],
};

describe('etcd: queued nodes for admission', { timeout: 120_000 }, () => {
  let backend: Awaited<ReturnType<typeof etcdRepository>>;
  let repo: EtcdRepository;
  /** Ranges over the run records (r/) read since the last reset (white box, at the repository's store). */
  let runRanges = 0;
  before(async () => {
    backend = await etcdRepository({ timersIntervalMs: 0, sweepIntervalMs: 0 });
    repo = backend.repository;
    const ctx = (repo as unknown as { ctx: { keys: { runs(): Buffer }; store: Store } }).ctx;
    const runs = ctx.keys.runs();
    const txn = ctx.store.txn.bind(ctx.store);
    ctx.store.txn = (req) => {
      if (req.success?.some((op) => op.request_range?.key?.equals(runs))) runRanges++;
      return txn(req);
    };
  });
  after(async () => {
    await backend?.teardown();
  });

  const queuedByStats = async () => {
    const s = await repo.stats();
    return s.nodeCounts.WAITING + s.nodeCounts.READY;
  };

  it("equals stats' WAITING + READY through a run's life, and reads no run records", async () => {
    const done = await repo.start(chain);
    await repo.cancel(done.id); // a completed run: stats counts it, queuedNodes has no reason to
    const run = await repo.start(chain);
    runRanges = 0;
    assert.equal(await repo.queuedNodes(), 3);
    assert.equal(runRanges, 0, 'no range over the runs');
    assert.equal(await queuedByStats(), 3);
    const lease = await repo.grantLease(60_000);
    const claim = await repo.claim({ runId: run.id, node: 'a', agentId: 'x', leaseId: lease.id });
    assert.ok(claim);
    assert.equal(await repo.queuedNodes(), 2, 'a RUNNING, b and c WAITING');
    assert.equal(await queuedByStats(), 2);
    await repo.finish({ runId: run.id, node: 'a', claimId: claim.claimId, conclusion: 'SUCCESS' });
    assert.equal(await repo.queuedNodes(), 2, 'b READY, c WAITING');
    await repo.cancel(run.id);
    assert.equal(await repo.queuedNodes(), 0);
    assert.equal(await queuedByStats(), 0);
    await repo.revokeLease(lease.id);
  });

  it('admission control reads queuedNodes, not stats', async () => {
    let statsCalls = 0;
    const stats = repo.stats.bind(repo);
    repo.stats = () => {
      statsCalls++;
      return stats();
    };
    try {
      const admission = new Admission(repo, 5);
      await admission.admit(3);
      await assert.rejects(admission.admit(3), /too much queued work/);
      assert.equal(statsCalls, 0);
    } finally {
      repo.stats = stats;
    }
  });
});

interface Store {
  txn(r: ITxnRequest): Promise<ITxnResponse>;
}
