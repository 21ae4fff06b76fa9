/**
 * The API process's claim-next feeds (ReadyFeeds): one subscription per set
 * of runtimes, each READY node handed to one long-poll, and a subscription
 * held back once enough nodes wait, so a backlog stays in the store.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ReadyFeeds } from '../../src/api/ready-feeds.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { silentLogger } from '../../src/log.js';
import { countingSubscriptions } from '../support/counting.js';

const oneNode = { nodes: [{ name: 'a', runtime: 'work', metadata: {}, retry: {} }], edges: [] };

describe('ReadyFeeds', () => {
  it('hands each READY node to one long-poll, and holds the subscription back past 1,024 waiting', async () => {
    const memory = new MemoryRepository();
    const backlog = 3_000;
    const runs = new Set<string>();
    for (let i = 0; i < backlog; i++) runs.add((await memory.start(oneNode)).id);
    const { repo, delivered } = countingSubscriptions(memory);
    const feeds = new ReadyFeeds(repo, silentLogger);
    const ac = new AbortController();
    try {
      const first = await feeds.next(['work'], ac.signal);
      assert.ok(first && runs.has(first.runId));
      await new Promise((r) => setTimeout(r, 200)); // time enough to (wrongly) take the whole backlog
      assert.ok(delivered() <= 1_024 + 1, `the feed took ${delivered()} of ${backlog} events`);
      const seen = new Set([first.runId]);
      while (seen.size < backlog) {
        const e = await feeds.next(['work'], ac.signal);
        assert.ok(e, 'a node for every long-poll while the backlog lasts');
        assert.ok(!seen.has(e.runId), 'each node to one long-poll');
        seen.add(e.runId);
      }
      assert.deepEqual(seen, runs);
    } finally {
      ac.abort();
      feeds.close();
      await memory.close?.();
    }
  });
});
