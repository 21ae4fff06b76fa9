/**
 * Rule 17 on etcd with a long history: etcd counts every key of a range it
 * reads, past the range's limit too, so a list page reads the newest-first
 * index in windows back from its newest run (LIST_WINDOWS_MS, then the rest)
 * and a page of recent runs counts only those. The windows together are the
 * one range: following the cursors lists every run once, newest first, across
 * their bounds.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IRangeRequest, IRangeResponse } from 'etcd3';
import type { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec } from '../../src/model/index.js';
import { SkewClock } from '../support/clock.js';
import { etcdRepository } from '../support/etcd.js';

const one: GraphSpec = { nodes: [{ name: 'a', runtime: 'r', metadata: {}, retry: {} }], edges: [] };
const HOUR = 3_600_000;

describe('etcd: a run list reads the index in windows back from its newest run', { timeout: 300_000 }, () => {
  let backend: Awaited<ReturnType<typeof etcdRepository>>;
  let repo: EtcdRepository;
  /** Index keys etcd counted for the list's reads (white box: the `count` of ranges over i/). */
  let counted = 0;
  /** Runs started, oldest first. */
  const started: string[] = [];

  before(async () => {
    const clock = new SkewClock();
    backend = await etcdRepository({ clock, timersIntervalMs: 0, sweepIntervalMs: 0 });
    repo = backend.repository;
    const ctx = (repo as unknown as { ctx: { keys: { runIndex(): Buffer }; store: Store } }).ctx;
    const index = ctx.keys.runIndex();
    const range = ctx.store.range.bind(ctx.store);
    ctx.store.range = async (r) => {
      const res = await range(r);
      if (r.key?.subarray(0, index.length).equals(index)) counted += Number(res.count);
      return res;
    };
    // 10 runs a day from 30 days ago to 3 days ago, 20 runs 2 hours ago, 20 a minute and a half ago, 30 now.
    const at = async (agoMs: number, n: number) => {
      clock.offsetMs = -agoMs;
      for (let i = 0; i < n; i++) started.push((await repo.start(one)).id);
    };
    for (let day = 30; day > 2; day--) await at(day * 24 * HOUR, 10);
    await at(2 * HOUR, 20);
    await at(90_000, 20);
    await at(0, 30);
  });
  after(async () => {
    await backend?.teardown();
  });

  it('a page of the newest runs counts those within the first window only', async () => {
    counted = 0;
    const page = await repo.listRuns({ limit: 25 });
    assert.deepEqual(
      page.runs.map((r) => r.id),
      started.slice(-25).reverse(),
    );
    assert.equal(counted, 30, `the newest minute's 30 runs, not the ${started.length} stored`);
  });

  it('following the cursors lists every run once, newest first, across the windows', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await repo.listRuns({ limit: 25, cursor });
      seen.push(...page.runs.map((r) => r.id));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    assert.deepEqual(seen, [...started].reverse());
    assert.equal(pages, Math.ceil(started.length / 25));
  });

  it('a filtered page reads within the windows too, and finds an old match through its cursor', async () => {
    const page = await repo.listRuns({ status: 'COMPLETED', limit: 10 });
    assert.deepEqual(page.runs, [], 'every run is open');
    assert.equal(page.nextCursor, undefined, 'every run looked at, within the budget: nothing more');
  });
});

interface Store {
  range(r: IRangeRequest): Promise<IRangeResponse>;
}
