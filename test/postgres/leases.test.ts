/**
 * Leases on PostgreSQL: expiry judged by the database's clock, the reaper
 * run by any process (and by several at once), orphaning visible to every
 * other process through NOTIFY.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PostgresRepository } from '../../src/backends/postgres/index.js';
import { ManualClock } from '../../src/model/index.js';
import { ClaimConflictError, LeaseExpiredError, type NodeEvent } from '../../src/protocol/index.js';
import { Heartbeat } from '../conformance/harness.js';
import { dropSchema, postgresRepository, uniqueSchema } from '../support/postgres.js';

const node = (name: string, retry = {}) => ({ name, runtime: 'work', metadata: {}, retry });

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('PostgreSQL leases and the reaper', () => {
  const schema = uniqueSchema();
  let agentSide: PostgresRepository; // the process whose lease lapses; it never reaps
  const reapers: PostgresRepository[] = []; // other processes, reaping concurrently

  before(async () => {
    // A clock frozen far in the past: lease expiry must not depend on it.
    agentSide = (await postgresRepository({ schema, reaperIntervalMs: 0, clock: new ManualClock(0) }))
      .repository;
    for (let i = 0; i < 3; i++)
      reapers.push((await postgresRepository({ schema, reaperIntervalMs: 20 + i * 7 })).repository);
  });
  after(async () => {
    await Promise.all([agentSide, ...reapers].map((r) => r.close()));
    await dropSchema(schema);
  });

  it('a lapsed lease orphans its claims once; another process recovers the node', {
    timeout: 60_000,
  }, async () => {
    const ac = new AbortController();
    const events: NodeEvent[] = [];
    const sub = (async () => {
      for await (const e of reapers[2]!.subscribe({ runtimes: ['work'], signal: ac.signal })) events.push(e);
    })();
    const watched: string[] = [];
    const run = await agentSide.start({ nodes: [node('a', { error: { maxAttempts: 2 } })], edges: [] });
    // watch() returns at once but takes its snapshot only after LISTEN is on (a round trip or two
    // later); what changed before that is in the snapshot, not in an event. So wait for the snapshot
    // before changing anything: the claim below is then a transition the watcher must report.
    let snapshotSeen!: () => void;
    const snapshot = new Promise<void>((resolve) => {
      snapshotSeen = resolve;
    });
    const watch = (async () => {
      for await (const e of reapers[0]!.watch(run.id, { signal: ac.signal })) {
        if (e.type === 'snapshot') {
          watched.push(`snapshot ${e.run.nodes[0]!.status}`);
          snapshotSeen();
        } else if (e.type === 'node')
          watched.push(`${e.node.status}${e.node.claim?.orphaned ? '/orphaned' : ''}`);
      }
    })();
    await snapshot;

    // Alive while it registers and claims, then silent: a 1 s lease the test heartbeats until the claim.
    const lease = await agentSide.grantLease(1_000);
    const heartbeat = new Heartbeat(agentSide, lease);
    await agentSide.registerAgent(lease.id, { id: 'doomed', runtimes: [{ name: 'work' }] });
    assert.deepEqual(
      (await reapers[1]!.listAgents()).map((a) => a.id),
      ['doomed'],
    );
    const first = await agentSide.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'doomed' });
    assert.ok(first);
    heartbeat.stop();

    // No keepAlive: the database's clock lapses the lease and some reaper orphans the claim.
    await waitFor('NODE_ORPHANED', async () =>
      events.find((e) => e.type === 'NODE_ORPHANED' && e.runId === run.id),
    );
    const orphaned = (await reapers[1]!.inspect(run.id)).nodes[0]!;
    assert.equal(orphaned.status, 'RUNNING');
    assert.equal(orphaned.claim?.orphaned, true);
    assert.deepEqual(await reapers[1]!.listAgents(), []);
    await assert.rejects(agentSide.keepAlive(lease.id), LeaseExpiredError);
    await assert.rejects(
      agentSide.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'doomed' }),
      LeaseExpiredError,
    );
    // The paused holder wakes up: its result is refused.
    await assert.rejects(
      agentSide.finish({ runId: run.id, node: 'a', claimId: first.claimId, conclusion: 'SUCCESS' }),
      ClaimConflictError,
    );

    const rescuerLease = await reapers[1]!.grantLease(60_000);
    const rescue = await reapers[1]!.claim({
      runId: run.id,
      node: 'a',
      leaseId: rescuerLease.id,
      agentId: 'rescuer',
    });
    assert.ok(rescue?.orphan);
    assert.equal(rescue.previousClaimId, first.claimId);
    await reapers[1]!.finish({ runId: run.id, node: 'a', claimId: rescue.claimId, conclusion: 'ERROR' });
    // One ERROR of two allowed: READY again.
    await waitFor('NODE_READY again', async () =>
      events.filter((e) => e.type === 'NODE_READY' && e.runId === run.id).length >= 2 ? true : undefined,
    );
    const again = await reapers[1]!.claim({
      runId: run.id,
      node: 'a',
      leaseId: rescuerLease.id,
      agentId: 'rescuer',
    });
    assert.ok(again && !again.orphan);
    assert.equal(again.attempt, 2);
    await reapers[1]!.finish({ runId: run.id, node: 'a', claimId: again.claimId, conclusion: 'SUCCESS' });
    await watch;
    ac.abort();
    await sub;
    // Three reapers raced: the node was orphaned exactly once.
    assert.equal(events.filter((e) => e.type === 'NODE_ORPHANED').length, 1);
    assert.deepEqual(watched, [
      'snapshot READY',
      'RUNNING',
      'RUNNING/orphaned',
      'RUNNING',
      'READY',
      'RUNNING',
      'COMPLETED',
    ]);
    const final = (await agentSide.inspect(run.id)).nodes[0]!;
    assert.deepEqual(
      final.attempts.map((a) => [a.conclusion, a.agentId]),
      [
        ['ERROR', 'rescuer'],
        ['SUCCESS', 'rescuer'],
      ],
    );
  });

  it('keepAlive holds a short lease well past its TTL', { timeout: 30_000 }, async () => {
    // 3 s of keepAlives every 250 ms on a 2 s lease: a lapse needs this process starved for 2 s
    // between two of them, which a loaded machine does not do (a 400 ms lease lapsed under load 12).
    const lease = await agentSide.grantLease(2_000);
    const run = await agentSide.start({ nodes: [node('a')], edges: [] });
    const claimed = await agentSide.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'steady' });
    assert.ok(claimed);
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 250));
      await agentSide.keepAlive(lease.id);
    }
    const n = (await reapers[0]!.inspect(run.id)).nodes[0]!;
    assert.equal(n.claim?.orphaned, false, 'a kept-alive claim is never orphaned');
    await agentSide.finish({ runId: run.id, node: 'a', claimId: claimed.claimId, conclusion: 'SUCCESS' });
  });

  it('revokeLease orphans at once and removes the agents', { timeout: 30_000 }, async () => {
    const lease = await agentSide.grantLease(60_000);
    await agentSide.registerAgent(lease.id, { id: 'leaving', runtimes: [{ name: 'work' }] });
    const run = await agentSide.start({ nodes: [node('a'), node('b')], edges: [] });
    const a = await agentSide.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'leaving' });
    const b = await agentSide.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'leaving' });
    assert.ok(a && b);
    await agentSide.revokeLease(lease.id);
    const after = await reapers[0]!.inspect(run.id);
    assert.deepEqual(
      after.nodes.map((n) => n.claim?.orphaned),
      [true, true],
    );
    assert.ok(!(await reapers[0]!.listAgents()).some((x) => x.id === 'leaving'));
  });
});
