/**
 * The memory backend around a retry and a watch: a retried run runs on
 * without its deadline even if the deadline sweep comes right after the
 * retry (rule 13), and a watch that ends leaves nothing behind per run.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { ManualClock } from '../../src/model/ids.js';

const oneNode = { nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }], edges: [] };

describe('memory: a retry and the deadline sweep; watches leave nothing behind', () => {
  it('a run retried before the next deadline sweep runs on', async () => {
    const clock = new ManualClock(Date.parse('2026-11-29T12:00:00Z'));
    // No timer of its own: the test sweeps.
    const repo = new MemoryRepository({ clock, leaseCheckIntervalMs: 0 });
    try {
      const run = await repo.start({ ...oneNode, deadline: '1h' });
      const lease = await repo.grantLease(60_000);
      const c = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'w' });
      await repo.finish({ runId: run.id, node: 'a', claimId: c!.claimId, conclusion: 'FAIL' });
      await repo.retry(run.id);
      clock.advance(1_000);
      repo.sweepTimers();
      const after = await repo.inspect(run.id);
      assert.equal(after.conclusion, undefined, 'not cancelled by the deadline the retry lifted');
      assert.equal(after.nodes[0]!.status, 'READY');
    } finally {
      await repo.close();
    }
  });

  it('a watch that ends leaves no entry for its run', async () => {
    const repo = new MemoryRepository();
    try {
      const watchers = (repo as unknown as { streams: { watchers: Map<string, Set<unknown>> } }).streams
        .watchers;
      for (let i = 0; i < 20; i++) {
        const run = await repo.start(oneNode);
        const ac = new AbortController();
        const watching = (async () => {
          for await (const _ of repo.watch(run.id, { signal: ac.signal }));
        })();
        ac.abort();
        await watching;
        await repo.cancel(run.id);
      }
      assert.equal(watchers.size, 0);
    } finally {
      await repo.close();
    }
  });
});
