/** Rule 6: cancel completes every unfinished node and records that the run was cancelled. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ClaimConflictError, NotFoundError } from '../../src/protocol/errors.js';
import { exampleDag, graph } from './fixtures.js';
import { type ConformanceTest, statusesOf } from './harness.js';

export function cancelSpec(test: ConformanceTest): void {
  describe('cancel (rule 6)', () => {
    test('RUNNING nodes get a CANCELLED attempt, READY and WAITING ones complete with none', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(exampleDag());
      await alice.run(run.id, 'a', 'SUCCESS');
      const c = await alice.mustClaim(run.id, 'c');
      // Now: a COMPLETED, c RUNNING, b READY, d e f g WAITING.
      const cancelled = await h.repo.cancel(run.id);

      assert.equal(cancelled.status, 'COMPLETED');
      assert.equal(cancelled.conclusion, 'CANCELLED');
      const stored = await h.repo.inspect(run.id);
      assert.deepEqual(statusesOf(stored), statusesOf(cancelled), 'cancel returns the stored run');
      assert.equal(stored.conclusion, 'CANCELLED');
      const attempts = Object.fromEntries(
        stored.nodes.map((n) => [n.spec.name, n.attempts.map((x) => x.conclusion)]),
      );
      assert.deepEqual(attempts, {
        a: ['SUCCESS'],
        b: [],
        c: ['CANCELLED'],
        d: [],
        e: [],
        f: [],
        g: [],
      });
      for (const n of stored.nodes) {
        assert.equal(n.status, 'COMPLETED', `${n.spec.name} completed`);
        assert.equal(n.claim, undefined, `${n.spec.name} holds no claim`);
      }
      const cAttempt = stored.nodes.find((n) => n.spec.name === 'c')!.attempts[0]!;
      assert.equal(cAttempt.claimId, c.claimId, 'the CANCELLED attempt is the running claim');
      assert.equal(cAttempt.agentId, 'alice');

      // The agent that was running c learns of the cancel when its finish is refused.
      await assert.rejects(alice.finish(c, 'SUCCESS', 'too late'), ClaimConflictError);
      const after = await h.node(run.id, 'c');
      assert.deepEqual(
        after.attempts.map((x) => x.conclusion),
        ['CANCELLED'],
      );
      assert.equal(await alice.claim(run.id, 'b'), undefined, 'nothing is claimable in a cancelled run');
    });

    test('a run cancelled before anything ran: every node completes with no attempt', async (h) => {
      const run = await h.start(exampleDag());
      const cancelled = await h.repo.cancel(run.id);
      assert.equal(cancelled.conclusion, 'CANCELLED');
      for (const n of cancelled.nodes) {
        assert.equal(n.status, 'COMPLETED');
        assert.deepEqual(n.attempts, []);
      }
    });

    test('cancel is idempotent, and leaves completed runs unchanged', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b']));
      await alice.mustClaim(run.id, 'a');
      const first = await h.repo.cancel(run.id);
      const second = await h.repo.cancel(run.id);
      assert.equal(second.conclusion, 'CANCELLED');
      assert.deepEqual(
        second.nodes.map((n) => [n.spec.name, n.status, n.attempts.map((x) => x.conclusion)]),
        first.nodes.map((n) => [n.spec.name, n.status, n.attempts.map((x) => x.conclusion)]),
      );

      const done = await h.start(graph(['x']));
      await alice.run(done.id, 'x', 'SUCCESS');
      const unchanged = await h.repo.cancel(done.id);
      assert.equal(unchanged.conclusion, 'SUCCESS', 'a completed run keeps its conclusion');
      assert.deepEqual(
        unchanged.nodes[0]!.attempts.map((x) => x.conclusion),
        ['SUCCESS'],
      );
    });

    test('claimsHeld tells an agent which of its claims still hold: not once finished, cancelled or revoked', async (h) => {
      const lease = await h.repo.grantLease(60_000);
      const alice = await h.agent('alice', { lease });
      const run = await h.start(graph(['a', 'b', 'c']));
      const other = await h.start(graph(['x']));
      const [a, b, c] = [
        await alice.mustClaim(run.id, 'a'),
        await alice.mustClaim(run.id, 'b'),
        await alice.mustClaim(run.id, 'c'),
      ];
      const x = await alice.mustClaim(other.id, 'x');
      const ref = (k: { runId: string; node: { spec: { name: string } }; claimId: string }) => ({
        runId: k.runId,
        node: k.node.spec.name,
        claimId: k.claimId,
      });
      assert.deepEqual(await h.repo.claimsHeld([]), []);
      assert.deepEqual(
        await h.repo.claimsHeld([
          ref(a),
          ref(b),
          { ...ref(a), claimId: `${a.claimId}-forged` },
          { ...ref(a), runId: '01ARZ3NDEKTSV4RRFFQ69G5FAV' },
          { ...ref(a), node: 'no-such-node' },
        ]),
        [true, true, false, false, false],
      );
      await alice.finish(a, 'SUCCESS');
      assert.deepEqual(await h.repo.claimsHeld([ref(a), ref(b), ref(c)]), [false, true, true]);
      await h.repo.cancel(run.id);
      assert.deepEqual(
        await h.repo.claimsHeld([ref(b), ref(c), ref(x)]),
        [false, false, true],
        'the cancelled run holds no claim; the other run keeps its own',
      );
      await h.repo.revokeLease(lease.id);
      assert.deepEqual(await h.repo.claimsHeld([ref(x)]), [false], 'an orphaned claim is not held');
    });

    test('cancel of an unknown run is NotFoundError', async (h) => {
      await assert.rejects(h.repo.cancel('01ARZ3NDEKTSV4RRFFQ69G5FAV'), NotFoundError);
    });
  });
}
