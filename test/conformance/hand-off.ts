/**
 * Rule 21: hand-off. A finish may claim, in its own transition, dependents it
 * makes READY for the finishing process (a lease, an agent id per place, the
 * runtimes it runs), so that process runs a run's next node without a round
 * trip through the store's announcements. A handed-off claim is an ordinary
 * claim in every other way.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { InvalidArgumentError } from '../../src/protocol/errors.js';
import type { ClaimedNode, ClaimRef } from '../../src/protocol/repository.js';
import { graph, node, text } from './fixtures.js';
import type { ConformanceTest } from './harness.js';

const ref = (c: ClaimedNode): ClaimRef => ({ runId: c.runId, node: c.node.spec.name, claimId: c.claimId });
const names = (cs: ClaimedNode[]) => cs.map((c) => c.node.spec.name).sort();

export function handOffSpec(test: ConformanceTest): void {
  describe('hand-off: a finish claims its dependents for its caller (rule 21)', () => {
    test(
      'dependents made READY are claimed for the caller, up to its places, with their inputs; the rest stay READY',
      async (h) => {
        assert.equal(h.repo.handsOff, true, 'a store that hands off says so');
        const alice = await h.agent('alice');
        const bob = await h.agent('bob');
        const run = await h.start(
          graph(
            ['a', 'b', 'c', 'd'],
            [
              ['a', 'b'],
              ['a', 'c'],
              ['a', 'd'],
            ],
          ),
        );
        const a = await alice.mustClaim(run.id, 'a');
        const { handedOff } = await alice.handingOff(a, 'SUCCESS', { places: 2, output: 'from a' });
        assert.equal(handedOff.length, 2, 'two places, two claims');
        for (const [i, c] of handedOff.entries()) {
          assert.equal(c.runId, run.id);
          assert.equal(c.attempt, 1);
          assert.equal(c.orphan, false);
          assert.equal(c.node.status, 'RUNNING');
          assert.equal(text(c.node.inputs.a), 'from a', 'the input is there, as a claim gives it');
          const stored = await h.node(run.id, c.node.spec.name);
          assert.equal(stored.status, 'RUNNING');
          assert.equal(stored.claim?.id, c.claimId);
          assert.equal(stored.claim?.agentId, `alice-${i + 1}`, 'each under the agent id of its place');
        }
        assert.deepEqual(await h.repo.claimsHeld(handedOff.map(ref)), [true, true]);
        const left = ['b', 'c', 'd'].filter((n) => !names(handedOff).includes(n));
        assert.deepEqual(await h.namesIn(run.id, 'READY'), left);
        // Handed off is claimed: nobody else gets it; what was left is anybody's.
        for (const c of handedOff) assert.equal(await bob.claim(run.id, c.node.spec.name), undefined);
        await bob.run(run.id, left[0]!, 'SUCCESS');
        for (const c of handedOff) await alice.finish(c, 'SUCCESS');
        assert.equal((await h.repo.inspect(run.id)).status, 'COMPLETED');
        const stats = await h.repo.stats();
        assert.equal(stats.nodeCounts.RUNNING, 0, 'the counts moved through RUNNING and out');
      },
      { requires: 'handOff' },
    );

    test(
      'only what the finish makes READY, of the offered runtimes; nothing without places',
      async (h) => {
        const alice = await h.agent('alice');
        const run = await h.start(
          graph(
            ['a', 'x', node('other', { runtime: 'elsewhere' }), 'join', 'solo'],
            [
              ['a', 'other'],
              ['a', 'join'],
              ['x', 'join'],
            ],
          ),
        );
        const a = await alice.mustClaim(run.id, 'a');
        const first = await alice.handingOff(a, 'SUCCESS', { places: 3 });
        assert.deepEqual(first.handedOff, [], 'other runs elsewhere; join waits for x');
        assert.deepEqual(await h.namesIn(run.id, 'READY'), ['other', 'solo', 'x']);
        const x = await alice.mustClaim(run.id, 'x');
        const none = await alice.handingOff(x, 'SUCCESS', { places: 0 });
        assert.deepEqual(none.handedOff, [], 'no places, no hand-off');
        assert.deepEqual(await h.namesIn(run.id, 'READY'), ['join', 'other', 'solo']);
      },
      { requires: 'handOff' },
    );

    test(
      'a FAIL that is retried makes nothing READY; one that completes hands off what its trigger makes READY',
      async (h) => {
        const alice = await h.agent('alice');
        const run = await h.start(
          graph(
            [node('a', { retry: { fail: 2 } }), node('cleanup', { trigger: 'all_done' })],
            [['a', 'cleanup']],
          ),
        );
        const first = await alice.handingOff(await alice.mustClaim(run.id, 'a'), 'FAIL', { places: 1 });
        assert.deepEqual(first.handedOff, []);
        assert.equal((await h.node(run.id, 'cleanup')).status, 'WAITING');
        const last = await alice.handingOff(await alice.mustClaim(run.id, 'a'), 'FAIL', { places: 1 });
        assert.deepEqual(names(last.handedOff), ['cleanup']);
        assert.deepEqual(last.handedOff[0]!.node.inputs, {}, 'a failed: no input');
        await alice.finish(last.handedOff[0]!, 'SUCCESS');
        assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');
      },
      { requires: 'handOff' },
    );

    test(
      'a handed-off claim is an ordinary claim: released, it is READY for anyone; its lease revoked, it is orphaned',
      async (h) => {
        const alice = await h.agent('alice');
        const bob = await h.agent('bob');
        const run = await h.start(
          graph(
            ['a', 'b', 'c'],
            [
              ['a', 'b'],
              ['a', 'c'],
            ],
          ),
        );
        const { handedOff } = await alice.handingOff(await alice.mustClaim(run.id, 'a'), 'SUCCESS', {
          places: 2,
        });
        assert.equal(handedOff.length, 2);
        const [first, second] = handedOff as [ClaimedNode, ClaimedNode];
        assert.deepEqual(await h.repo.release([ref(first)]), [true]);
        assert.equal((await h.node(run.id, first.node.spec.name)).status, 'READY');
        await bob.run(run.id, first.node.spec.name, 'SUCCESS');
        await h.repo.revokeLease(alice.lease.id);
        const orphaned = await h.node(run.id, second.node.spec.name);
        assert.equal(orphaned.claim?.orphaned, true, 'a lapse finds the handed-off claim');
        const recovery = await bob.mustClaim(run.id, second.node.spec.name);
        assert.equal(recovery.orphan, true);
        assert.equal(recovery.previousClaimId, second.claimId);
      },
      { requires: 'handOff' },
    );

    test('under a lease that is gone the finish stands and hands off nothing', async (h) => {
      const alice = await h.agent('alice');
      const lease = await h.repo.grantLease(60_000);
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      const a = await alice.mustClaim(run.id, 'a');
      await h.repo.revokeLease(lease.id);
      const result = await alice.finish(
        a,
        'SUCCESS',
        '',
        {},
        {
          leaseId: lease.id,
          agentIds: ['gone-1'],
          runtimes: [a.node.spec.runtime],
        },
      );
      assert.deepEqual(result.handedOff, []);
      assert.equal((await h.node(run.id, 'a')).status, 'COMPLETED');
      assert.equal((await h.node(run.id, 'b')).status, 'READY');
    });
  });

  describe('hand-off at sizes past one store transaction (rule 21)', () => {
    test(
      "a fan-out of 150 hands off at most the offer's 64 places; each is claimed, the rest READY, all finish",
      async (h) => {
        const alice = await h.agent('alice');
        const fan = Array.from({ length: 150 }, (_, i) => `d${String(i).padStart(3, '0')}`);
        const run = await h.start(
          graph(
            ['root', ...fan],
            fan.map((d) => ['root', d] as [string, string]),
          ),
        );
        const { handedOff } = await alice.handingOff(await alice.mustClaim(run.id, 'root'), 'SUCCESS', {
          places: 64,
          output: 'fan',
        });
        assert.ok(handedOff.length <= 64, `at most the places offered, got ${handedOff.length}`);
        assert.equal(
          new Set(handedOff.map((c) => c.node.spec.name)).size,
          handedOff.length,
          'each node once',
        );
        assert.deepEqual(
          await h.repo.claimsHeld(handedOff.map(ref)),
          handedOff.map(() => true),
        );
        const taken = new Set(names(handedOff));
        assert.deepEqual(
          await h.namesIn(run.id, 'READY'),
          fan.filter((d) => !taken.has(d)),
        );
        await Promise.all(handedOff.map((c) => alice.finish(c, 'SUCCESS')));
        for (const d of fan.filter((x) => !taken.has(x))) await alice.run(run.id, d, 'SUCCESS');
        assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
      },
      { requires: 'handOff' },
    );

    test(
      '40 concurrent finishes each handing off two (their items past one transaction together): every claim good',
      async (h) => {
        const alice = await h.agent('alice');
        const runs = await Promise.all(
          Array.from({ length: 40 }, () =>
            h.start(
              graph(
                ['a', 'b', 'c'],
                [
                  ['a', 'b'],
                  ['a', 'c'],
                ],
              ),
            ),
          ),
        );
        const roots = await Promise.all(runs.map((r) => alice.mustClaim(r.id, 'a')));
        const results = await Promise.all(
          roots.map((a) => alice.handingOff(a, 'SUCCESS', { places: 2, output: `out ${a.runId}` })),
        );
        const all = results.flatMap((r) => r.handedOff);
        assert.equal(all.length, 80, 'both dependents of every run');
        for (const c of all) assert.equal(text(c.node.inputs.a), `out ${c.runId}`, "its own run's input");
        assert.deepEqual(
          await h.repo.claimsHeld(all.map(ref)),
          all.map(() => true),
        );
        await Promise.all(all.map((c) => alice.finish(c, 'SUCCESS')));
        for (const r of runs) assert.equal((await h.repo.inspect(r.id)).conclusion, 'SUCCESS');
      },
      { requires: 'handOff' },
    );
  });

  describe('hand-off offers are checked (rule 21)', () => {
    test('a malformed offer is refused before anything changes', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      const a = await alice.mustClaim(run.id, 'a');
      const bad = [
        { leaseId: '', agentIds: ['x'], runtimes: ['r'] },
        { leaseId: alice.lease.id, agentIds: 'x', runtimes: ['r'] },
        { leaseId: alice.lease.id, agentIds: Array.from({ length: 65 }, (_, i) => `x${i}`), runtimes: ['r'] },
        { leaseId: alice.lease.id, agentIds: [''], runtimes: ['r'] },
        { leaseId: alice.lease.id, agentIds: ['x'], runtimes: [7] },
      ];
      for (const offer of bad)
        await assert.rejects(
          alice.finish(a, 'SUCCESS', '', {}, offer as never),
          InvalidArgumentError,
          JSON.stringify(offer).slice(0, 80),
        );
      assert.equal((await h.node(run.id, 'a')).status, 'RUNNING', 'the finish did not happen');
    });
  });
}
