/**
 * claim-next under many callers: they share one subscription per runtime set
 * in the API process, and every READY node is claimed exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import type { Repository } from '../../src/protocol/repository.js';

describe('claim-next with many callers', () => {
  const memory = new MemoryRepository({ leaseCheckIntervalMs: 50 });
  let subscriptions = 0;
  // The real store, with its subscribe calls counted.
  const counted = new Proxy(memory, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop === 'subscribe')
        return (...args: Parameters<Repository['subscribe']>) => {
          subscriptions++;
          return target.subscribe(...args);
        };
      return value.bind(target);
    },
  });
  let server: ApiServer;
  let url: string;
  before(async () => {
    server = new ApiServer({ repository: counted, ui: false });
    url = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close(100);
    await memory.close();
  });

  const post = async (method: string, body: unknown) => {
    const res = await fetch(`${url}/v0/agent/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field below.
    return { status: res.status, body: (await res.json()) as any };
  };

  it('20 callers drain 200 nodes: each claimed once, over one shared subscription', async () => {
    const reg = await post('register', { runtimes: [{ name: 'many' }], ttl_ms: 30_000 });
    const lease = reg.body.lease.id as string;
    const nodes = Array.from({ length: 200 }, (_, i) => ({
      name: `n${i}`,
      runtime: 'many',
      metadata: {},
      retry: {},
    }));
    // Half the nodes READY before the callers come, half while they wait.
    const first = await memory.start({ nodes: nodes.slice(0, 100), edges: [] });
    const claimed: string[] = [];
    const callers = Array.from({ length: 20 }, async (_, i) => {
      const agent = `caller-${i}`;
      await post('register', { agent_id: agent, runtimes: [{ name: 'many' }], lease_id: lease });
      for (;;) {
        const c = await post('claim-next', {
          lease_id: lease,
          agent_id: agent,
          runtimes: ['many'],
          wait_ms: 500,
        });
        assert.equal(c.status, 200, JSON.stringify(c.body));
        if (!c.body.claimed) return;
        claimed.push(`${c.body.claimed.runId}/${c.body.claimed.node.spec.name}`);
        const f = await post('finish', {
          run_id: c.body.claimed.runId,
          node_name: c.body.claimed.node.spec.name,
          claim_id: c.body.claimed.claimId,
          conclusion: 'SUCCESS',
        });
        assert.equal(f.status, 200, JSON.stringify(f.body));
      }
    });
    await new Promise((r) => setTimeout(r, 100));
    const second = await memory.start({ nodes: nodes.slice(100), edges: [] });
    await Promise.all(callers);
    assert.equal(claimed.length, 200, 'every node claimed');
    assert.equal(new Set(claimed).size, 200, 'no node claimed twice');
    for (const run of [first, second]) assert.equal((await memory.inspect(run.id)).conclusion, 'SUCCESS');
    assert.equal(subscriptions, 1, 'the callers shared one subscription');
  });
});
