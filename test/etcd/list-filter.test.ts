/**
 * Rule 17 on etcd: a filtered run list reads at most LIST_SCAN_BUDGET runs per
 * page, so a rare match costs pages (short, even empty, each with a cursor),
 * never one unbounded read; following the cursors still finds every match.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { LIST_SCAN_BUDGET } from '../../src/backends/etcd/limits.js';
import { etcdRepository } from '../support/etcd.js';

const one = { nodes: [{ name: 'a', runtime: 'r', metadata: {}, retry: {} }], edges: [] };

describe('etcd: filtered run lists are bounded', { timeout: 300_000 }, () => {
  let backend: Awaited<ReturnType<typeof etcdRepository>>;
  before(async () => {
    backend = await etcdRepository();
  });
  after(async () => {
    await backend?.teardown();
  });

  it(`a match older than ${LIST_SCAN_BUDGET} others is found through a short page and its cursor`, async () => {
    const repo = backend.repository;
    const rare = await repo.start(one, { labels: { rare: 'yes' } });
    // Newer runs without the label, more than one page's budget; started in parallel batches.
    for (let i = 0; i < LIST_SCAN_BUDGET + 50; i += 50)
      await Promise.all(Array.from({ length: 50 }, () => repo.start(one, { labels: { rare: 'no' } })));
    const first = await repo.listRuns({ labels: { rare: 'yes' }, limit: 10 });
    assert.deepEqual(first.runs, [], 'the budget ran out before the match');
    assert.ok(first.nextCursor, 'with a cursor to go on from');
    const second = await repo.listRuns({ labels: { rare: 'yes' }, limit: 10, cursor: first.nextCursor });
    assert.deepEqual(
      second.runs.map((r) => r.id),
      [rare.id],
    );
    assert.equal(second.nextCursor, undefined, 'nothing older');
  });

  it('a filtered page reads the index once, whatever its budget: etcd counts every older run per read', async () => {
    const repo = backend.repository;
    const store = (repo as unknown as { ctx: { store: { range(r: { key: Buffer }): Promise<unknown> } } }).ctx
      .store;
    const index = (repo as unknown as { ctx: { keys: { runIndex(): Buffer } } }).ctx.keys.runIndex();
    const range = store.range.bind(store);
    let reads = 0;
    store.range = (r) => {
      if (r.key.subarray(0, index.length).equals(index)) reads++;
      return range(r);
    };
    try {
      const page = await repo.listRuns({ labels: { rare: 'nowhere' }, limit: 10 });
      assert.deepEqual(page.runs, []);
      assert.ok(page.nextCursor, 'the budget ran out first');
      assert.equal(reads, 1, `the index read once for ${LIST_SCAN_BUDGET} runs looked at`);
    } finally {
      store.range = range;
    }
  });
});
