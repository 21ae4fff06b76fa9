/**
 * Rule 3: a claim lives while its lease does. A lapsed or revoked lease
 * orphans its claims (NODE_ORPHANED), one agent recovers each orphan with an
 * ERROR attempt, and rule 5's retry policy applies.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ClaimConflictError, LeaseExpiredError } from '../../src/protocol/errors.js';
import type { Lease, NodeEvent } from '../../src/protocol/repository.js';
import { graph, inputsAsText, node, text } from './fixtures.js';
import {
  type ConformanceTest,
  EVENT_TIMEOUT_MS,
  eventually,
  type Harness,
  SHORT_LEASE_MS,
  type TestAgent,
} from './harness.js';

/** How long a lapse may take to be noticed: the granted TTL plus the usual event bound. */
function lapseTimeout(lease: Lease): number {
  return lease.ttlMs + EVENT_TIMEOUT_MS;
}

const orphaned = (runId: string, name: string) => (e: NodeEvent) =>
  e.type === 'NODE_ORPHANED' && e.runId === runId && e.node === name;
const ready = (runId: string, name: string) => (e: NodeEvent) =>
  e.type === 'NODE_READY' && e.runId === runId && e.node === name;

/** A holder whose lease lapses: claims `name` and never heartbeats. */
async function claimAndGoSilent(h: Harness, runId: string, name: string) {
  const holder = await h.agent('holder', { ttlMs: SHORT_LEASE_MS });
  assert.ok(holder.lease.ttlMs >= SHORT_LEASE_MS, 'a lease is never shorter than asked');
  // Alive until its claim is made, however loaded the machine; silent from then on.
  const heartbeat = h.heartbeat(holder.lease);
  const claimed = await holder.mustClaim(runId, name);
  heartbeat.stop();
  return { holder, claimed };
}

export function leasesSpec(test: ConformanceTest): void {
  // Concurrent: these tests mostly wait for leases to lapse, and each has its own repository.
  describe('leases and orphans (rule 3)', { concurrency: true }, () => {
    test('a lapsed claim is orphaned, recovered with an ERROR attempt, and retried', async (h) => {
      const events = h.subscribe();
      const rescuer = await h.agent('rescuer');
      const run = await h.start(graph([node('a', { retry: { error: 2 } }), 'b'], [['a', 'b']]));
      const { holder, claimed } = await claimAndGoSilent(h, run.id, 'a');
      assert.equal(await rescuer.claim(run.id, 'a'), undefined, 'a live claim cannot be taken');

      await events.waitForItem('NODE_ORPHANED for a', orphaned(run.id, 'a'), {
        timeoutMs: lapseTimeout(holder.lease),
      });
      const lapsed = await h.node(run.id, 'a');
      assert.equal(lapsed.status, 'RUNNING');
      assert.equal(lapsed.claim?.orphaned, true);

      const recovery = await rescuer.mustClaim(run.id, 'a');
      assert.equal(recovery.orphan, true);
      assert.equal(recovery.previousClaimId, claimed.claimId);
      assert.equal(recovery.attempt, 1, 'the recovery records the lost attempt');
      assert.notEqual(recovery.claimId, claimed.claimId);

      // The old holder comes back: its result is refused, before and after the recovery finishes.
      await assert.rejects(holder.finish(claimed, 'SUCCESS', 'late'), ClaimConflictError);
      const mark = events.mark();
      await rescuer.finish(recovery, 'ERROR', 'lease lapsed');
      await assert.rejects(holder.finish(claimed, 'SUCCESS', 'late'), ClaimConflictError);

      const afterError = await h.node(run.id, 'a');
      assert.equal(afterError.status, 'READY', 'error 1 of 2: retried');
      assert.deepEqual(
        afterError.attempts.map((x) => [x.conclusion, x.claimId, x.agentId]),
        [['ERROR', recovery.claimId, 'rescuer']],
      );
      await events.waitForItem('a new NODE_READY for a', ready(run.id, 'a'), { after: mark });

      const retry = await rescuer.mustClaim(run.id, 'a');
      assert.equal(retry.attempt, 2);
      assert.equal(retry.orphan, false);
      await rescuer.finish(retry, 'SUCCESS', 'second time');
      const b = await rescuer.mustClaim(run.id, 'b');
      assert.deepEqual(
        inputsAsText(b.node.inputs),
        { a: 'second time' },
        'the late result never became an input',
      );
      await rescuer.finish(b, 'SUCCESS');
      const final = await h.repo.inspect(run.id);
      assert.equal(final.conclusion, 'SUCCESS');
      assert.ok(
        final.nodes.every((n) => n.attempts.every((x) => text(x.output) !== 'late')),
        'no stale output recorded',
      );
    });

    test('an orphan without retries completes with ERROR and leaves downstream unreached', async (h) => {
      const events = h.subscribe();
      const rescuer = await h.agent('rescuer');
      const run = await h.start(graph(['a', 'b', 'c'], [['a', 'b']]));
      const { holder, claimed } = await claimAndGoSilent(h, run.id, 'a');
      await events.waitForItem('NODE_ORPHANED for a', orphaned(run.id, 'a'), {
        timeoutMs: lapseTimeout(holder.lease),
      });
      // Rule 4: once its lease lapsed the holder cannot finish, even before anyone recovers the node.
      await assert.rejects(holder.finish(claimed, 'SUCCESS', 'late'), ClaimConflictError);
      const recovery = await rescuer.mustClaim(run.id, 'a');
      assert.equal(recovery.orphan, true);
      await rescuer.finish(recovery, 'ERROR');
      await rescuer.run(run.id, 'c', 'SUCCESS');

      const state = await h.repo.inspect(run.id);
      const byName = Object.fromEntries(state.nodes.map((n) => [n.spec.name, n]));
      assert.equal(byName.a!.status, 'COMPLETED');
      assert.deepEqual(
        byName.a!.attempts.map((x) => x.conclusion),
        ['ERROR'],
      );
      assert.equal(byName.b!.status, 'COMPLETED', 'b is unreached');
      assert.deepEqual(byName.b!.attempts, []);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'FAIL');
    });

    test('keepAlive keeps a claim alive past its TTL', async (h) => {
      const events = h.subscribe();
      const holder = await h.agent('holder', { ttlMs: SHORT_LEASE_MS });
      const other = await h.agent('other');
      const heartbeat = h.heartbeat(holder.lease);
      const run = await h.start(graph(['a']));
      const claimed = await holder.mustClaim(run.id, 'a');

      // Absence cannot be polled for: hold for one and a half TTLs, then look.
      const hold = Math.max(holder.lease.ttlMs * 1.5, holder.lease.ttlMs + 500);
      await new Promise((r) => setTimeout(r, hold));
      heartbeat.stop();
      assert.equal(heartbeat.failure, undefined, 'every keepAlive succeeded');

      const n = await h.node(run.id, 'a');
      assert.equal(n.claim?.id, claimed.claimId);
      assert.equal(n.claim?.orphaned, false);
      assert.equal(await other.claim(run.id, 'a'), undefined, 'the claim still holds');
      assert.ok(!events.items.some(orphaned(run.id, 'a')), 'no NODE_ORPHANED');
      assert.ok(
        (await h.repo.listAgents()).some((a) => a.id === 'holder'),
        'its agent is still listed',
      );
      await holder.finish(claimed, 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test('a lapsed lease: its agents vanish from listAgents and keepAlive is LeaseExpiredError', async (h) => {
      const lapsing = await h.agent('lapsing', { ttlMs: SHORT_LEASE_MS });
      await h.agent('steady');
      assert.deepEqual((await h.repo.listAgents()).map((a) => a.id).sort(), ['lapsing', 'steady']);
      await eventually(
        'the lapsed agent to leave listAgents',
        async () => !(await h.repo.listAgents()).some((a) => a.id === 'lapsing'),
        lapseTimeout(lapsing.lease),
      );
      await assert.rejects(h.repo.keepAlive(lapsing.lease.id), LeaseExpiredError);
      assert.deepEqual(
        (await h.repo.listAgents()).map((a) => a.id),
        ['steady'],
      );
    });

    test('revokeLease orphans its claims at once and removes its agents', async (h) => {
      const events = h.subscribe();
      const lease = await h.repo.grantLease(60_000);
      const first = await h.agent('proc-1', { lease });
      await h.agent('proc-2', { lease });
      const rescuers: TestAgent[] = [];
      for (let i = 0; i < 10; i++) rescuers.push(await h.agent(`rescuer-${i}`));
      const run = await h.start(graph(['a', 'b']));
      const claimed = await first.mustClaim(run.id, 'a');

      await h.repo.revokeLease(lease.id);
      // At once: no waiting for a TTL.
      assert.equal((await h.node(run.id, 'a')).claim?.orphaned, true);
      const agents = (await h.repo.listAgents()).map((a) => a.id);
      assert.ok(!agents.includes('proc-1') && !agents.includes('proc-2'), `revoked agents listed: ${agents}`);
      await events.waitForItem('NODE_ORPHANED for a', orphaned(run.id, 'a'));
      // Rule 8: a subscriber that joins now learns of the orphan too.
      const late = h.subscribe();
      await late.waitForItem('NODE_ORPHANED for a, joining late', orphaned(run.id, 'a'));
      assert.ok(!events.items.some(orphaned(run.id, 'b')), 'b was never claimed, never orphaned');

      // Exactly one of several rescuers recovers it.
      const results = await Promise.all(rescuers.map((r) => r.claim(run.id, 'a')));
      const winners = results.flatMap((c, i) => (c ? [{ claimed: c, agent: rescuers[i]! }] : []));
      assert.equal(winners.length, 1, 'exactly one recovers the orphan');
      const [{ claimed: recovery, agent }] = winners as [(typeof winners)[0]];
      assert.equal(recovery.orphan, true);
      assert.equal(recovery.previousClaimId, claimed.claimId);
      await agent.finish(recovery, 'ERROR');
      await assert.rejects(first.finish(claimed, 'SUCCESS'), ClaimConflictError);
      const a = await h.node(run.id, 'a');
      assert.equal(a.status, 'COMPLETED');
      assert.deepEqual(
        a.attempts.map((x) => [x.conclusion, x.agentId]),
        [['ERROR', agent.id]],
      );
    });

    test('listAgents shows live agents with their runtimes; deregisterAgent removes one', async (h) => {
      const lease = await h.repo.grantLease(60_000);
      await h.agent('a1', { lease, runtimes: ['exec', 'debug'] });
      await h.agent('a2', { lease, runtimes: ['debug'] });
      const listed = await h.repo.listAgents();
      const a1 = listed.find((a) => a.id === 'a1');
      assert.ok(a1);
      assert.deepEqual(a1.runtimes.map((r) => r.name).sort(), ['debug', 'exec']);
      assert.equal(a1.hostname, 'conformance-host');
      assert.ok(!Number.isNaN(Date.parse(a1.startedAt)), 'startedAt is a time');
      await h.repo.deregisterAgent('a1');
      assert.deepEqual(
        (await h.repo.listAgents()).map((a) => a.id),
        ['a2'],
      );
      await h.repo.keepAlive(lease.id);
    });
  });
}
