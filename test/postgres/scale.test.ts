/**
 * Size on PostgreSQL: a 10,000-node run starts in one statement and runs to
 * completion; listing pages by keyset over many runs; retention deletes only
 * completed runs and keeps the counters right.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { wideAndLong } from '../../bench/graphs.js';
import { ManualClock, type NodeSpec } from '../../src/model/index.js';
import type { NodeEvent } from '../../src/protocol/index.js';
import { postgresRepository } from '../support/postgres.js';

const node = (name: string): NodeSpec => ({ name, runtime: 'work', metadata: {}, retry: {} });

describe('PostgreSQL at size', () => {
  it('starts a 10,000-node run and runs it to completion', { timeout: 300_000 }, async () => {
    const { repository: repo, teardown } = await postgresRepository({ reaperIntervalMs: 0, poolSize: 10 });
    const ac = new AbortController();
    try {
      const spec = wideAndLong(10_000, 'work');
      const run = await repo.start(spec);
      assert.equal(run.nodes.length, 10_000);
      let stats = await repo.stats();
      assert.deepEqual(stats.nodeCounts, { WAITING: 9_999, READY: 1, RUNNING: 0, COMPLETED: 0 });

      // Heartbeats keep the lease while the run drains, however loaded the machine is.
      const lease = await repo.grantLease(30_000);
      const heartbeat = setInterval(() => void repo.keepAlive(lease.id).catch(() => {}), 5_000);
      const queue: NodeEvent[] = [];
      const wake: (() => void)[] = [];
      const sub = (async () => {
        for await (const e of repo.subscribe({ runtimes: ['work'], signal: ac.signal })) {
          queue.push(e);
          for (const w of wake.splice(0)) w();
        }
      })();
      let finished = 0;
      const worker = async () => {
        while (finished < 10_000) {
          const e = queue.shift();
          if (!e) {
            await new Promise<void>((r) => {
              wake.push(r);
              setTimeout(r, 100);
            });
            continue;
          }
          const c = await repo.claim({ runId: e.runId, node: e.node, leaseId: lease.id, agentId: 'w' });
          if (!c) continue;
          await repo.finish({ runId: e.runId, node: e.node, claimId: c.claimId, conclusion: 'SUCCESS' });
          finished++;
        }
        for (const w of wake.splice(0)) w();
      };
      await Promise.all(Array.from({ length: 8 }, worker)).finally(() => clearInterval(heartbeat));
      ac.abort();
      await sub;
      const done = await repo.inspect(run.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.conclusion, 'SUCCESS');
      // The join node's inputs hold every one of its 5,000 upstream nodes.
      assert.equal(Object.keys(done.nodes.find((n) => n.spec.name === 'join')!.inputs).length, 5_000);
      stats = await repo.stats();
      assert.deepEqual(stats.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 10_000 });
    } finally {
      ac.abort();
      await teardown();
    }
  });

  it('pages through runs newest first by keyset, within time windows', { timeout: 60_000 }, async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const { repository: repo, teardown } = await postgresRepository({ reaperIntervalMs: 0, clock });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 250; i++) {
        // Several runs share each millisecond: the id breaks the tie.
        if (i % 3 === 0) clock.advance(1);
        ids.push((await repo.start({ nodes: [node('a')], edges: [] })).id);
      }
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await repo.listRuns({ limit: 40, cursor });
        seen.push(...page.runs.map((r) => r.id));
        cursor = page.nextCursor;
      } while (cursor);
      assert.deepEqual(seen, [...ids].reverse());

      const t0 = Date.UTC(2026, 0, 1);
      const window = await repo.listRuns({ since: t0 + 10, until: t0 + 20, limit: 1000 });
      assert.equal(window.runs.length, 30); // ten milliseconds, three runs each
      assert.ok(
        window.runs.every((r) => Date.parse(r.createdAt) >= t0 + 10 && Date.parse(r.createdAt) < t0 + 20),
      );
      assert.equal(window.nextCursor, undefined);
      assert.deepEqual(window.runs[0]!.nodeCounts, { WAITING: 0, READY: 1, RUNNING: 0, COMPLETED: 0 });
      assert.equal(window.runs[0]!.status, 'WAITING');
    } finally {
      await teardown();
    }
  });

  it('retention deletes completed runs before the cutoff only', { timeout: 60_000 }, async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const { repository: repo, teardown } = await postgresRepository({ reaperIntervalMs: 0, clock });
    try {
      const old: string[] = [];
      for (let i = 0; i < 1_200; i++) old.push((await repo.start({ nodes: [node('a')], edges: [] })).id);
      const unfinished = await repo.start({ nodes: [node('a'), node('b')], edges: [] });
      for (const id of old) await repo.cancel(id);
      clock.advance(60_000);
      const recent = await repo.start({ nodes: [node('a')], edges: [] });
      await repo.cancel(recent.id);

      const deleted = await repo.deleteCompletedRunsBefore(Date.UTC(2026, 0, 1) + 30_000);
      assert.equal(deleted, 1_200);
      const stats = await repo.stats();
      assert.equal(stats.runCount, 2);
      assert.deepEqual(stats.nodeCounts, { WAITING: 0, READY: 2, RUNNING: 0, COMPLETED: 1 });
      assert.deepEqual(
        (await repo.listRuns()).runs.map((r) => r.id),
        [recent.id, unfinished.id],
      );
      assert.equal(await repo.deleteCompletedRunsBefore(Date.UTC(2026, 0, 1) + 30_000), 0);
    } finally {
      await teardown();
    }
  });
});
