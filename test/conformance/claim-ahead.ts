/**
 * Rule 20: claim-ahead. An agent process may claim nodes before a slot is
 * free for them; it gives back (release) the claims whose work never started,
 * and reports when the work of each one really started (FinishRequest.startedAt).
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ClaimConflictError, InvalidArgumentError } from '../../src/protocol/errors.js';
import type { ClaimedNode, ClaimRef } from '../../src/protocol/repository.js';
import { bytes, graph, node } from './fixtures.js';
import { type ConformanceTest, clockPast, eventNodes } from './harness.js';

const ref = (c: ClaimedNode): ClaimRef => ({ runId: c.runId, node: c.node.spec.name, claimId: c.claimId });

export function claimAheadSpec(test: ConformanceTest): void {
  describe('claim-ahead: release and the reported start (rule 20)', () => {
    test('a released claim puts its node back READY: no attempt, the same attempt number, announced, claimable by anyone', async (h) => {
      const alice = await h.agent('alice');
      const bob = await h.agent('bob');
      const run = await h.start(graph(['a', 'b']));
      const a = await alice.mustClaim(run.id, 'a');
      const events = h.subscribe();
      await events.waitFor('NODE_READY for b', (e) => eventNodes(e, run.id).includes('b'));
      const mark = events.mark();

      assert.deepEqual(await h.repo.release([ref(a)]), [true]);
      const back = await h.node(run.id, 'a');
      assert.equal(back.status, 'READY');
      assert.equal(back.claim, undefined);
      assert.deepEqual(back.attempts, [], 'a release records no attempt');
      await events.waitFor('NODE_READY for a again', (e) => eventNodes(e, run.id).includes('a'), {
        after: mark,
      });

      const again = await bob.mustClaim(run.id, 'a');
      assert.equal(again.attempt, 1, 'the attempt number is unchanged');
      assert.notEqual(again.claimId, a.claimId);
      await bob.finish(again, 'SUCCESS', 'out');
      const done = await h.node(run.id, 'a');
      assert.equal(done.attempts.length, 1);
      assert.equal(done.attempts[0]!.claimId, again.claimId);
      assert.equal(done.attempts[0]!.agentId, 'bob');
    });

    test('a released claim is spent: its finish is refused, it no longer holds, a second release does nothing', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const a = await alice.mustClaim(run.id, 'a');
      assert.deepEqual(await h.repo.release([ref(a)]), [true]);
      await assert.rejects(alice.finish(a, 'SUCCESS'), ClaimConflictError);
      assert.deepEqual(await h.repo.claimsHeld([ref(a)]), [false]);
      assert.deepEqual(await h.repo.release([ref(a)]), [false]);
      assert.equal((await h.node(run.id, 'a')).status, 'READY');
    });

    test('a retried node keeps its attempts and number across a release', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph([node('flaky', { retry: { fail: 3 } })]));
      await alice.finish(await alice.mustClaim(run.id, 'flaky'), 'FAIL');
      const second = await alice.mustClaim(run.id, 'flaky');
      assert.equal(second.attempt, 2);
      assert.deepEqual(await h.repo.release([ref(second)]), [true]);
      const third = await alice.mustClaim(run.id, 'flaky');
      assert.equal(third.attempt, 2, 'still the second attempt');
      await alice.finish(third, 'SUCCESS');
      const done = await h.node(run.id, 'flaky');
      assert.deepEqual(
        done.attempts.map((x) => x.conclusion),
        ['FAIL', 'SUCCESS'],
      );
    });

    test('claims that no longer hold are ignored, in order, and change nothing: finished, cancelled, lapsed, made up, unknown', async (h) => {
      const alice = await h.agent('alice');
      const doomed = await h.agent('doomed');
      const run = await h.start(graph(['done', 'held', 'orphan', 'forged']));
      const other = await h.start(graph(['x']));
      const done = await alice.mustClaim(run.id, 'done');
      await alice.finish(done, 'SUCCESS');
      const held = await alice.mustClaim(run.id, 'held');
      const orphan = await doomed.mustClaim(run.id, 'orphan');
      await h.repo.revokeLease(doomed.lease.id); // its claims are orphaned now (rule 3)
      const forged = await alice.mustClaim(run.id, 'forged');
      const x = await alice.mustClaim(other.id, 'x');
      await h.repo.cancel(other.id);

      const answers = await h.repo.release([
        ref(done),
        { ...ref(forged), claimId: `${forged.claimId}-forged` },
        ref(orphan),
        ref(x),
        { runId: run.id, node: 'no-such-node', claimId: held.claimId },
        { runId: `${run.id}0`, node: 'held', claimId: held.claimId },
        ref(held),
      ]);
      assert.deepEqual(answers, [false, false, false, false, false, false, true]);

      const state = await h.repo.inspect(run.id);
      const by = (name: string) => state.nodes.find((n) => n.spec.name === name)!;
      assert.equal(by('done').status, 'COMPLETED');
      assert.equal(by('done').attempts.length, 1);
      assert.equal(by('held').status, 'READY');
      assert.equal(by('forged').status, 'RUNNING');
      assert.equal(by('forged').claim?.id, forged.claimId, 'the real claim still holds');
      assert.equal(by('orphan').status, 'RUNNING', 'an orphan is left to its recovery (rule 3)');
      assert.equal(by('orphan').claim?.orphaned, true);
      const recovered = await alice.mustClaim(run.id, 'orphan');
      assert.equal(recovered.orphan, true);
      const cancelled = (await h.repo.inspect(other.id)).nodes[0]!;
      assert.deepEqual(
        cancelled.attempts.map((a) => a.conclusion),
        ['CANCELLED'],
      );
      assert.deepEqual(await h.repo.release([]), []);
    });

    test('a release with a malformed claim is refused and releases nothing', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const a = await alice.mustClaim(run.id, 'a');
      await assert.rejects(h.repo.release([ref(a), { ...ref(a), claimId: '' }]), InvalidArgumentError);
      await assert.rejects(h.repo.release([{ ...ref(a), node: '' }]), InvalidArgumentError);
      assert.equal((await h.node(run.id, 'a')).status, 'RUNNING');
    });

    test('the reported start is the attempt start, kept within [claimed at, finished at]; without one, the claim time', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['plain', 'inside', 'early', 'late']));
      const claimed = new Map<string, ClaimedNode>();
      for (const n of ['plain', 'inside', 'early', 'late']) claimed.set(n, await alice.mustClaim(run.id, n));
      const claimedAt = new Map(
        (await h.repo.inspect(run.id)).nodes.map((n) => [n.spec.name, Date.parse(n.startedAt)]),
      );
      await clockPast(Math.max(...claimedAt.values()) + 20);
      const reported = Date.now();
      await clockPast(reported + 20);
      const finish = (name: string, startedAt?: number) => {
        const c = claimed.get(name)!;
        return h.repo.finish({
          runId: c.runId,
          node: name,
          claimId: c.claimId,
          conclusion: 'SUCCESS',
          output: bytes(''),
          startedAt,
        });
      };
      await finish('plain');
      await finish('inside', reported);
      await finish('early', claimedAt.get('early')! - 3_600_000);
      await finish('late', reported + 3_600_000);

      const state = await h.repo.inspect(run.id);
      const attempt = (name: string) => state.nodes.find((n) => n.spec.name === name)!.attempts[0]!;
      assert.equal(Date.parse(attempt('plain').startedAt), claimedAt.get('plain'));
      assert.equal(Date.parse(attempt('inside').startedAt), reported);
      assert.equal(Date.parse(attempt('early').startedAt), claimedAt.get('early'), 'not before its claim');
      assert.equal(attempt('late').startedAt, attempt('late').finishedAt, 'not after its end');
    });

    test('a reported start that is not ms since the epoch is refused and records nothing', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const a = await alice.mustClaim(run.id, 'a');
      for (const startedAt of [-1, 1.5, Number.NaN])
        await assert.rejects(
          h.repo.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS', startedAt }),
          InvalidArgumentError,
        );
      assert.equal((await h.node(run.id, 'a')).status, 'RUNNING');
      await alice.finish(a, 'SUCCESS');
    });
  });
}
