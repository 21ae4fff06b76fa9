/**
 * The memory backend judges leases by its own process's clock, and the agents
 * it embeds heartbeat from the same process: a stall of the whole process
 * (a long garbage collection, CPU starvation, SIGSTOP) silences every holder
 * at once. Such a stall does not count against a lease (rule 3, see
 * MemoryLeases); time the process ran still does.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import type { GraphSpec } from '../../src/model/index.js';

const TTL_MS = 300;
const oneNode: GraphSpec = { nodes: [{ name: 'a', runtime: 'noop', metadata: {}, retry: {} }], edges: [] };

/** Blocks this process's event loop: nothing else in it runs meanwhile, as in a stall. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // spin
  }
}

describe('memory backend: a stall of its own process', () => {
  const repo = new MemoryRepository({ leaseCheckIntervalMs: 20 });
  after(() => repo.close());

  async function holding(): Promise<{ leaseId: string; runId: string }> {
    const lease = await repo.grantLease(TTL_MS);
    await repo.registerAgent(lease.id, { id: `agent-${lease.id}`, runtimes: [{ name: 'noop' }] });
    const run = await repo.start(oneNode);
    const claimed = await repo.claim({
      runId: run.id,
      node: 'a',
      leaseId: lease.id,
      agentId: `agent-${lease.id}`,
    });
    assert.ok(claimed, 'the node is claimed');
    return { leaseId: lease.id, runId: run.id };
  }

  it('does not lapse a lease: its holder heartbeats after it and keeps its claim', async () => {
    const { leaseId, runId } = await holding();
    stall(TTL_MS * 4);
    await repo.keepAlive(leaseId);
    const node = (await repo.inspect(runId)).nodes[0]!;
    assert.equal(node.status, 'RUNNING');
    assert.equal(node.claim?.orphaned, false, 'the claim held through the stall');
  });

  it('a lease nobody keeps alive still lapses once the process has run past its TTL', async () => {
    const { leaseId, runId } = await holding();
    stall(TTL_MS * 4); // forgiven: no holder could have heartbeated
    const deadline = performance.now() + 60_000;
    while ((await repo.inspect(runId)).nodes[0]!.claim?.orphaned !== true) {
      assert.ok(performance.now() < deadline, 'the silent lease lapsed within a minute');
      await new Promise((r) => setTimeout(r, 20));
    }
    await assert.rejects(repo.keepAlive(leaseId), { name: 'LeaseExpiredError' });
  });
});
