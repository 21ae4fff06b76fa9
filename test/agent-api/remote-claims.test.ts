/**
 * RemoteRepository asks about and gives back any number of claims: the API
 * takes MAX_CLAIMS_HELD a call, and a remote agent pool with a deep
 * claim-ahead queue and many slots holds more (every heartbeat's check and
 * the release on stop were refused past it).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CLAIMS_HELD } from '../../src/api/agent-service.js';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { RemoteRepository } from '../../src/backends/remote/index.js';
import type { ClaimRef } from '../../src/protocol/repository.js';

describe('RemoteRepository: claimsHeld and release past one call', () => {
  it(`answers ${MAX_CLAIMS_HELD + 100} claims in order, and gives them all back`, async () => {
    const store = new MemoryRepository();
    const server = new ApiServer({ repository: store, ui: false });
    const address = await server.listen('127.0.0.1', 0);
    const remote = new RemoteRepository({ address, timeoutMs: 120_000 });
    try {
      const n = MAX_CLAIMS_HELD + 100;
      const run = await store.start({
        nodes: Array.from({ length: n }, (_, i) => ({
          name: `n${i}`,
          runtime: 'x',
          metadata: {},
          retry: {},
        })),
        edges: [],
      });
      const lease = await remote.grantLease(60_000);
      const refs: ClaimRef[] = [];
      for (let i = 0; i < n; i++) {
        const c = await store.claim({ runId: run.id, node: `n${i}`, leaseId: lease.id, agentId: 'a' });
        assert.ok(c);
        refs.push({ runId: run.id, node: `n${i}`, claimId: c.claimId });
      }
      // One forged claim in the second part: the answers keep their places.
      const asked = [...refs.slice(0, n - 1), { ...refs[n - 1]!, claimId: 'forged' }];
      const held = await remote.claimsHeld(asked);
      assert.equal(held.length, n);
      assert.deepEqual(held.slice(0, n - 1), Array(n - 1).fill(true));
      assert.equal(held[n - 1], false);
      const released = await remote.release(refs);
      assert.deepEqual(released, Array(n).fill(true));
      const after = await store.inspect(run.id);
      assert.equal(after.nodes.filter((x) => x.status === 'READY').length, n, 'every node READY again');
    } finally {
      await remote.close();
      await server.close(500);
      await store.close();
    }
  });
});
