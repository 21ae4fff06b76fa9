/**
 * Sealing a completed run's record, and retention on etcd: it reads run records in pages past the first (a share of
 * what is left, RETENTION_PAGE at least, since etcd counts the rest of the
 * range at every read) and deletes every completed run before the floor,
 * keeping open ones.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { EtcdContext } from '../../src/backends/etcd/context.js';
import { countedPage, RETENTION_PAGE, RETENTION_PAGE_MAX } from '../../src/backends/etcd/limits.js';
import { decodeJson, type RunRecord } from '../../src/backends/etcd/records.js';
import type { GraphSpec } from '../../src/model/index.js';
import { etcdRepository } from '../support/etcd.js';

const one: GraphSpec = { nodes: [{ name: 'a', runtime: 'r', metadata: {}, retry: {} }], edges: [] };

describe('etcd: retention past a page', { timeout: 300_000 }, () => {
  let backend: Awaited<ReturnType<typeof etcdRepository>>;
  before(async () => {
    backend = await etcdRepository({ timersIntervalMs: 0, sweepIntervalMs: 0 });
  });
  after(async () => {
    await backend?.teardown();
  });

  it(`deletes every completed run of ${2 * RETENTION_PAGE + 50} before the floor and keeps the open one`, async () => {
    const repo = backend.repository;
    const open = await repo.start(one);
    const done: string[] = [];
    for (let i = 0; i < 2 * RETENTION_PAGE + 50; i += 50) {
      const runs = await Promise.all(Array.from({ length: 50 }, () => repo.start(one)));
      await Promise.all(runs.map((r) => repo.cancel(r.id)));
      done.push(...runs.map((r) => r.id));
    }
    const floor = Date.now() + 1;
    await new Promise((r) => setTimeout(r, 5));
    const kept = await repo.start(one);
    await repo.cancel(kept.id); // completed, but after the floor
    assert.equal(await repo.deleteCompletedRunsBefore(floor), done.length);
    const left = (await repo.listRuns({ limit: 1000 })).runs.map((r) => r.id);
    assert.deepEqual(left.sort(), [open.id, kept.id].sort());
  });

  it('a run whose last finish completes its dependents unreached is sealed by that finish', async () => {
    const repo = backend.repository;
    // a succeeds; its only dependent h (one_failed) completes unreached in that finish, with no dependent of its own.
    const run = await repo.start({
      nodes: [
        { name: 'a', runtime: 'r', metadata: {}, retry: {} },
        { name: 'h', runtime: 'r', metadata: {}, retry: {}, trigger: 'one_failed' },
      ],
      edges: [{ source: 'a', destination: 'h' }],
    });
    const lease = await repo.grantLease(60_000);
    const c = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 't' });
    await repo.finish({ runId: run.id, node: 'a', claimId: c!.claimId, conclusion: 'SUCCESS' });
    // Readers derive a conclusion the run key lacks; lists and retention read the sealed one.
    const { ctx } = repo as unknown as { ctx: EtcdContext };
    const kv = (await ctx.store.range({ key: ctx.keys.run(run.id) })).kvs[0]!;
    const record = decodeJson<RunRecord>(kv.value);
    assert.equal(record.conclusion, 'SUCCESS', 'the conclusion is on record');
    assert.ok(record.finishedAt);
  });

  it('a page is a share of what is left, between its bounds', () => {
    assert.equal(countedPage(0, RETENTION_PAGE, RETENTION_PAGE_MAX), RETENTION_PAGE);
    assert.equal(countedPage(32_000, RETENTION_PAGE, RETENTION_PAGE_MAX), 1_000);
    assert.equal(countedPage(10_000_000, RETENTION_PAGE, RETENTION_PAGE_MAX), RETENTION_PAGE_MAX);
  });
});
