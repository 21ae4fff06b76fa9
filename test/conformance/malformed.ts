/** Malformed requests: every backend refuses them with InvalidArgumentError (a 4xx), never a store error. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { LIMITS } from '../../src/model/limits.js';
import { InvalidArgumentError, InvalidGraphError } from '../../src/protocol/errors.js';
import { graph, RUNTIME } from './fixtures.js';
import { type ConformanceTest, LONG_LEASE_MS } from './harness.js';

const invalid = (e: unknown) => e instanceof InvalidArgumentError;

export function malformedSpec(test: ConformanceTest): void {
  describe('malformed requests', () => {
    test('a NUL in a run id is refused on inspect, cancel, watch, claim and finish', async (h) => {
      const bad = 'run\u0000id';
      await assert.rejects(h.repo.inspect(bad), invalid);
      await assert.rejects(h.repo.cancel(bad), invalid);
      assert.throws(() => h.repo.watch(bad, { signal: AbortSignal.timeout(1000) }), invalid);
      const lease = await h.repo.grantLease(LONG_LEASE_MS);
      await assert.rejects(h.repo.claim({ runId: bad, node: 'a', leaseId: lease.id, agentId: 'x' }), invalid);
      await assert.rejects(
        h.repo.finish({ runId: bad, node: 'a', claimId: 'c', conclusion: 'SUCCESS' }),
        invalid,
      );
      await h.repo.revokeLease(lease.id);
    });

    test('agent registration: NUL in id, hostname or runtime, and an oversized id, are refused', async (h) => {
      const lease = await h.repo.grantLease(LONG_LEASE_MS);
      const ok = { id: 'agent-1', runtimes: [{ name: RUNTIME }], hostname: 'host' };
      for (const agent of [
        { ...ok, id: 'a\u0000b' },
        { ...ok, hostname: 'h\u0000' },
        { ...ok, runtimes: [{ name: 'r\u0000' }] },
        { ...ok, id: 'x'.repeat(20_000) },
      ])
        await assert.rejects(h.repo.registerAgent(lease.id, agent), invalid);
      assert.equal((await h.repo.registerAgent(lease.id, ok)).id, 'agent-1');
      await h.repo.revokeLease(lease.id);
    });

    test('a lease TTL past the limit (or past 32 bits) is refused', async (h) => {
      await assert.rejects(h.repo.grantLease(2 ** 32 + 5), invalid);
      await assert.rejects(h.repo.grantLease(LIMITS.maxLeaseTtlMs + 1), invalid);
      await assert.rejects(h.repo.grantLease(Number.MAX_SAFE_INTEGER), invalid);
      await assert.rejects(h.repo.grantLease(-1), invalid);
    });

    test('a garbage list cursor is refused', async (h) => {
      await h.start(graph(['only']));
      for (const cursor of ['garbage', 'zzzz', '12.', '.abc', '1.a\u0000b', '0x10.id'])
        await assert.rejects(h.repo.listRuns({ cursor }), invalid, cursor);
    });

    test('__proto__ as a node name, metadata key or retry key is refused, never dropped', async (h) => {
      const node = (over: object) => ({ name: 'a', runtime: RUNTIME, metadata: {}, retry: {}, ...over });
      const md: Record<string, string[]> = {};
      Object.defineProperty(md, '__proto__', { value: ['v'], enumerable: true });
      const retry: Record<string, { maxAttempts: number }> = {};
      Object.defineProperty(retry, '__proto__', { value: { maxAttempts: 3 }, enumerable: true });
      for (const n of [node({ name: '__proto__' }), node({ metadata: md }), node({ retry })])
        await assert.rejects(h.repo.start({ nodes: [n], edges: [] }), InvalidGraphError);
    });

    test('the metadata limit counts UTF-8 bytes', async (h) => {
      // 30,000 × "é" is 30,000 UTF-16 units but 60,000 bytes; twice that is over 64 KiB only in bytes.
      const value = 'é'.repeat(35_000);
      const spec = {
        nodes: [{ name: 'a', runtime: RUNTIME, metadata: { k: [value] }, retry: {} }],
        edges: [],
      };
      await assert.rejects(h.repo.start(spec), /bytes \(UTF-8\)/);
    });
  });
}
