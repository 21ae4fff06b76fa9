/**
 * Rule 8 on etcd with a backlog: a subscription lists the READY queue a page
 * (`subscribePage` keys) at a time, the next page once the subscriber has taken
 * most of the last, so a backlog stays in etcd, not in the subscriber's
 * memory. The watch runs from the first page's revision meanwhile, so a node
 * that turns READY while the pages are read is delivered too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ITxnRequest } from 'etcd3';
import {
  SUBSCRIBE_PAGE,
  SUBSCRIBE_PAGE_MAX,
  SUBSCRIBE_PAGE_SHARE,
  subscribePage,
} from '../../src/backends/etcd/limits.js';
import type { GraphSpec } from '../../src/model/index.js';
import type { NodeEvent } from '../../src/protocol/index.js';
import { etcdRepository } from '../support/etcd.js';

const independent = (n: number, runtime: string): GraphSpec => ({
  nodes: Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime, metadata: {}, retry: {} })),
  edges: [],
});

describe('etcd: a subscription reads a backlog a page at a time', { timeout: 300_000 }, () => {
  let backend: Awaited<ReturnType<typeof etcdRepository>>;
  /** Reads of a page of runtime `paged`'s READY keys (white box: limited ranges, counted at the repository's store). */
  let pages = 0;
  /** Page reads of runtime `failing` still to fail (each rejects as a lost connection would). */
  let failPages = 0;
  before(async () => {
    backend = await etcdRepository();
    const store = (backend.repository as unknown as { ctx: { store: { txn(r: ITxnRequest): unknown } } }).ctx
      .store;
    const txn = store.txn.bind(store);
    store.txn = (req) => {
      const paged = (op: (typeof req.success & {})[number]) =>
        Number(op.request_range?.limit) > 0 && String(op.request_range?.key).includes('t/paged/q/');
      if (req.success?.some(paged)) pages++;
      const failing = req.success?.some(
        (op) =>
          /t\/failing\/q\/.+/.test(String(op.request_range?.key)) && Number(op.request_range?.limit) > 0,
      );
      if (failing && failPages > 0) {
        failPages--;
        return Promise.reject(new Error('connection lost (test)'));
      }
      return txn(req);
    };
  });
  after(async () => {
    await backend?.teardown();
  });

  it('reads the next page only as the subscriber takes the last, each READY node once, oldest run first', async () => {
    const repo = backend.repository;
    // 2.5 pages in one run, then 600 one-node runs: 3,100 READY nodes.
    await repo.start(independent(2_500, 'paged'));
    for (let i = 0; i < 600; i += 50)
      await Promise.all(Array.from({ length: 50 }, () => repo.start(independent(1, 'paged'))));
    pages = 0;
    const ac = new AbortController();
    const iterator = repo.subscribe({ runtimes: ['paged'], signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const events: NodeEvent[] = [(await iterator.next()).value as NodeEvent];
      await new Promise((r) => setTimeout(r, 300)); // time enough to (wrongly) read on
      assert.equal(pages, 1, 'one page read while the subscriber has taken one event');
      while (events.length < 3_100) events.push((await iterator.next()).value as NodeEvent);
      assert.ok(
        events.every((e) => e.type === 'NODE_READY'),
        'READY events only',
      );
      assert.equal(new Set(events.map((e) => `${e.runId}/${e.node}`)).size, 3_100, 'every READY node once');
      assert.ok(
        events.every((e, i) => i === 0 || events[i - 1]!.runId <= e.runId),
        'oldest run first',
      );
      assert.equal(pages, 4, 'four pages: 1,000, 1,000, 1,000 and 100 keys');
    } finally {
      ac.abort();
      await iterator.return?.();
    }
  });

  it('delivers a node that turns READY while the pages are read, before or after the page being read', async () => {
    const repo = backend.repository;
    const wide = await repo.start(independent(2 * SUBSCRIBE_PAGE + 10, 'turning'));
    const ac = new AbortController();
    const iterator = repo.subscribe({ runtimes: ['turning'], signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const first = (await iterator.next()).value as NodeEvent;
      // `first` was in the first page; claimed and given back, it is READY again behind the pages' cursor.
      const lease = await repo.grantLease(60_000);
      const claim = await repo.claim({ runId: wide.id, node: first.node, agentId: 'a', leaseId: lease.id });
      assert.ok(claim, 'claimed');
      const ref = { runId: wide.id, node: first.node, claimId: claim.claimId };
      assert.deepEqual(await repo.release([ref]), [true]);
      await repo.revokeLease(lease.id);
      // A run started now is newer than every listed one: the watch has it (and the last page, if read after).
      const late = await repo.start(independent(1, 'turning'));
      const seen = new Map<string, number>();
      const backlog = 2 * SUBSCRIBE_PAGE + 10;
      const all = () => seen.size === backlog + 1 && seen.has(`${wide.id}/${first.node}`);
      while (!all()) {
        const e = (await iterator.next()).value as NodeEvent;
        seen.set(`${e.runId}/${e.node}`, (seen.get(`${e.runId}/${e.node}`) ?? 0) + 1);
      }
      assert.equal(seen.get(`${wide.id}/${first.node}`), 1, 'the node given back is delivered again, once');
      assert.ok((seen.get(`${late.id}/n0`) ?? 0) >= 1, 'the late run is delivered');
      const others = [...seen].filter(([k]) => k !== `${late.id}/n0`);
      assert.ok(
        others.every(([, n]) => n === 1),
        'every listed node once',
      );
    } finally {
      ac.abort();
      await iterator.return?.();
    }
  });

  it('a page is a share of what is left, so the keys etcd counts per key delivered stay bounded', () => {
    assert.equal(subscribePage(0), SUBSCRIBE_PAGE);
    assert.equal(subscribePage(10_000), SUBSCRIBE_PAGE, 'a small backlog: the least page');
    assert.equal(subscribePage(320_000), 320_000 / SUBSCRIBE_PAGE_SHARE);
    assert.equal(subscribePage(10_000_000), SUBSCRIBE_PAGE_MAX, 'held in memory: at most the largest page');
  });

  it('a page read that fails lists again from the start, and every READY node is still delivered', async () => {
    const repo = backend.repository;
    const run = await repo.start(independent(2 * SUBSCRIBE_PAGE + 10, 'failing'));
    failPages = 1;
    const ac = new AbortController();
    const iterator = repo.subscribe({ runtimes: ['failing'], signal: ac.signal })[Symbol.asyncIterator]();
    try {
      const seen = new Map<string, number>();
      while (seen.size < 2 * SUBSCRIBE_PAGE + 10) {
        const e = (await iterator.next()).value as NodeEvent;
        assert.equal(e.runId, run.id);
        seen.set(e.node, (seen.get(e.node) ?? 0) + 1);
      }
      assert.equal(failPages, 0, "the second page's read failed");
      assert.ok(
        [...seen.values()].some((n) => n > 1),
        'the first page again, from the new listing (at least once)',
      );
    } finally {
      ac.abort();
      await iterator.return?.();
    }
  });
});

describe('etcd: a chunked run is listed for subscribers once it commits', { timeout: 120_000 }, () => {
  it("another process's subscriber gets the run's READY nodes, though its first listing of the committed run failed", async () => {
    const one = await etcdRepository();
    // Another process on the same namespace starts the run: too large for one transaction, it is written in
    // chunks, its READY nodes announced before the run is visible (claims of them find no run yet).
    const other = await etcdRepository({ namespace: one.namespace });
    const store = (one.repository as unknown as { ctx: { store: { txn(r: ITxnRequest): unknown } } }).ctx
      .store;
    const txn = store.txn.bind(store);
    let failed = 0;
    store.txn = (req) => {
      const listing = req.success?.some((op) =>
        /\/t\/committed\/q\/[^/]+\/$/.test(String(op.request_range?.key)),
      );
      if (listing && failed === 0) {
        failed++;
        return Promise.reject(new Error('etcdserver: request timed out (injected)'));
      }
      return txn(req);
    };
    const ac = new AbortController();
    try {
      const lease = await one.repository.grantLease(60_000);
      const claimed = new Set<string>();
      const subscribed = (async () => {
        for await (const e of one.repository.subscribe({ runtimes: ['committed'], signal: ac.signal })) {
          const c = await one.repository.claim({
            runId: e.runId,
            node: e.node,
            leaseId: lease.id,
            agentId: 'p1',
          });
          if (c) claimed.add(e.node);
          if (claimed.size === 200) return;
        }
      })();
      await new Promise((r) => setTimeout(r, 300)); // the subscription's watch is on
      await other.repository.start(independent(200, 'committed'));
      const deadline = Date.now() + 30_000;
      while (claimed.size < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(failed, 1, 'the first listing failed');
      assert.equal(claimed.size, 200, 'every READY node reached the subscriber and was claimed');
      ac.abort();
      await subscribed;
    } finally {
      ac.abort();
      await other.repository.close();
      await one.teardown();
    }
  });
});
