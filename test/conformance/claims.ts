/** Rules 2 and 4: exclusive claims, and finishes fenced by the claim. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { LIMITS } from '../../src/model/limits.js';
import {
  ClaimConflictError,
  InvalidArgumentError,
  LeaseExpiredError,
  NotFoundError,
} from '../../src/protocol/errors.js';
import type { ClaimedNode } from '../../src/protocol/repository.js';
import { graph, independentNodes, node, text } from './fixtures.js';
import type { ConformanceTest, Harness, TestAgent } from './harness.js';

const CLAIMERS = 50;
const CONTENDED_NODES = 20;

/** 50 agents over 5 leases (a few agent processes with several agents each). */
async function crowd(h: Harness): Promise<TestAgent[]> {
  const agents: TestAgent[] = [];
  for (let p = 0; p < 5; p++) {
    const lease = await h.repo.grantLease(60_000);
    for (let i = 0; i < CLAIMERS / 5; i++) agents.push(await h.agent(`agent-${p}-${i}`, { lease }));
  }
  return agents;
}

/** Every agent claims the node at once; returns the winners' claims. */
async function race(
  agents: TestAgent[],
  runId: string,
  name: string,
): Promise<{ agent: TestAgent; claimed: ClaimedNode }[]> {
  const results = await Promise.all(agents.map((a) => a.claim(runId, name)));
  return results.flatMap((claimed, i) => (claimed ? [{ agent: agents[i]!, claimed }] : []));
}

export function claimsSpec(test: ConformanceTest): void {
  describe('claims (rules 2, 4)', () => {
    test(`${CLAIMERS} concurrent claimers on one READY node: exactly one wins, on each of ${CONTENDED_NODES} nodes`, async (h) => {
      const agents = await crowd(h);
      const run = await h.start(independentNodes(CONTENDED_NODES));
      const names = run.nodes.map((n) => n.spec.name);
      const rounds = await Promise.all(names.map((name) => race(agents, run.id, name)));

      const state = await h.repo.inspect(run.id);
      for (const [i, winners] of rounds.entries()) {
        const name = names[i]!;
        assert.equal(winners.length, 1, `exactly one winner on ${name}, got ${winners.length}`);
        const [{ agent, claimed }] = winners as [{ agent: TestAgent; claimed: ClaimedNode }];
        const n = state.nodes.find((x) => x.spec.name === name)!;
        assert.equal(n.status, 'RUNNING');
        assert.equal(n.claim?.id, claimed.claimId, `the winner's claim is the recorded one on ${name}`);
        assert.equal(n.claim?.agentId, agent.id);
        assert.equal(claimed.attempt, 1);
      }
      const claimIds = rounds.map((w) => w[0]!.claimed.claimId);
      assert.equal(new Set(claimIds).size, CONTENDED_NODES, 'claim ids are unique');
      assert.equal((await h.repo.stats()).nodeCounts.RUNNING, CONTENDED_NODES);
    });

    test('a node retried after FAIL is contended again: exactly one wins the second attempt', async (h) => {
      const agents = await crowd(h);
      const run = await h.start(graph([node('flaky', { retry: { fail: 2 } })]));
      const [first] = await race(agents, run.id, 'flaky');
      await first!.agent.finish(first!.claimed, 'FAIL');
      const second = await race(agents, run.id, 'flaky');
      assert.equal(second.length, 1);
      assert.equal(second[0]!.claimed.attempt, 2);
      await second[0]!.agent.finish(second[0]!.claimed, 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test('only a READY node can be claimed: WAITING, RUNNING and COMPLETED ones cannot', async (h) => {
      const alice = await h.agent('alice');
      const bob = await h.agent('bob');
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      assert.equal(await bob.claim(run.id, 'b'), undefined, 'b is WAITING');
      const a = await alice.mustClaim(run.id, 'a');
      assert.equal(await bob.claim(run.id, 'a'), undefined, 'a is RUNNING under a live claim');
      assert.equal(await alice.claim(run.id, 'a'), undefined, 'not even by its holder');
      await alice.finish(a, 'SUCCESS');
      assert.equal(await bob.claim(run.id, 'a'), undefined, 'a is COMPLETED');
      assert.equal((await h.node(run.id, 'a')).attempts.length, 1);
    });

    test('the claim and the attempt record their metadata, agent and output', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const claimed = await alice.mustClaim(run.id, 'a', { 'claim.note': ['x', 'y'] });
      const running = await h.node(run.id, 'a');
      assert.deepEqual(running.claim?.metadata, { 'claim.note': ['x', 'y'] });
      await alice.finish(claimed, 'SUCCESS', 'bytes out', { 'result.note': ['z'] });
      const [attempt] = (await h.node(run.id, 'a')).attempts;
      assert.equal(attempt!.conclusion, 'SUCCESS');
      assert.equal(text(attempt!.output), 'bytes out');
      assert.deepEqual(attempt!.metadata, { 'result.note': ['z'] });
      assert.equal(attempt!.claimId, claimed.claimId);
      assert.equal(attempt!.agentId, 'alice');
    });

    test('a finish with a made-up claim id is refused and not recorded', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b']));
      const a = await alice.mustClaim(run.id, 'a');
      const forged = { ...a, claimId: `${a.claimId}-forged` };
      await assert.rejects(alice.finish(forged, 'SUCCESS', 'forged'), ClaimConflictError);
      // A READY node has no claim to match at all.
      const b = { ...a, claimId: 'never-issued', node: { ...a.node, spec: { ...a.node.spec, name: 'b' } } };
      await assert.rejects(alice.finish(b, 'FAIL'), ClaimConflictError);

      const state = await h.repo.inspect(run.id);
      const na = state.nodes.find((x) => x.spec.name === 'a')!;
      assert.equal(na.status, 'RUNNING');
      assert.equal(na.claim?.id, a.claimId, 'the real claim still holds');
      assert.deepEqual(na.attempts, []);
      assert.equal(state.nodes.find((x) => x.spec.name === 'b')!.status, 'READY');
      await alice.finish(a, 'SUCCESS', 'real');
      assert.equal(text((await h.node(run.id, 'a')).attempts[0]!.output), 'real');
    });

    test('finishing twice with the same claim is refused the second time', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph([node('a', { retry: { fail: 3 } })]));
      const first = await alice.mustClaim(run.id, 'a');
      await alice.finish(first, 'FAIL', 'one');
      await assert.rejects(alice.finish(first, 'SUCCESS', 'two'), ClaimConflictError);
      await assert.rejects(alice.finish(first, 'FAIL', 'the same conclusion again'), ClaimConflictError);
      const n = await h.node(run.id, 'a');
      assert.equal(n.status, 'READY', 'the refused SUCCESS did not complete the node');
      assert.deepEqual(
        n.attempts.map((a) => [a.conclusion, text(a.output)]),
        [['FAIL', 'one']],
      );
      // Also after the node moved on under a new claim.
      const second = await alice.mustClaim(run.id, 'a');
      await assert.rejects(alice.finish(first, 'SUCCESS'), ClaimConflictError);
      assert.equal((await h.node(run.id, 'a')).claim?.id, second.claimId);
    });

    test('a finish with a conclusion other than SUCCESS, FAIL or ERROR is refused and not recorded', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      const a = await alice.mustClaim(run.id, 'a');
      for (const conclusion of ['CANCELLED', 'success', ''])
        await assert.rejects(
          h.repo.finish({
            runId: run.id,
            node: 'a',
            claimId: a.claimId,
            conclusion: conclusion as 'SUCCESS',
          }),
          InvalidArgumentError,
        );
      const n = await h.node(run.id, 'a');
      assert.equal(n.status, 'RUNNING');
      assert.deepEqual(n.attempts, []);
      await alice.finish(a, 'SUCCESS');
      assert.deepEqual(
        (await h.node(run.id, 'a')).attempts.map((x) => x.conclusion),
        ['SUCCESS'],
      );
    });

    test('claim and finish metadata must be storable text: a NUL is InvalidArgumentError, nothing recorded', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      await assert.rejects(alice.claim(run.id, 'a', { k: ['\u0000'] }), InvalidArgumentError);
      assert.equal((await h.node(run.id, 'a')).status, 'READY');
      const a = await alice.mustClaim(run.id, 'a');
      await assert.rejects(
        h.repo.finish({
          runId: run.id,
          node: 'a',
          claimId: a.claimId,
          conclusion: 'SUCCESS',
          metadata: { k: ['\uD800'] },
        }),
        InvalidArgumentError,
      );
      assert.deepEqual((await h.node(run.id, 'a')).attempts, []);
      await alice.finish(a, 'SUCCESS');
    });

    test('claim and finish metadata past the size limit (64 KiB) is InvalidArgumentError, nothing recorded', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      // Past the limit (an etcd store refused such a finish for good, and its node stayed RUNNING).
      const big = { k: ['x'.repeat(LIMITS.maxNodeMetadataBytes)] };
      await assert.rejects(alice.claim(run.id, 'a', big), (e: Error) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.match(e.message, /the limit is 65536/);
        return true;
      });
      assert.equal((await h.node(run.id, 'a')).status, 'READY');
      const a = await alice.mustClaim(run.id, 'a');
      await assert.rejects(
        h.repo.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS', metadata: big }),
        InvalidArgumentError,
      );
      assert.deepEqual((await h.node(run.id, 'a')).attempts, []);
      // At the limit it is kept.
      const fits = { k: ['x'.repeat(LIMITS.maxNodeMetadataBytes - 1)] };
      await h.repo.finish({
        runId: run.id,
        node: 'a',
        claimId: a.claimId,
        conclusion: 'SUCCESS',
        metadata: fits,
      });
      assert.equal(
        (await h.node(run.id, 'a')).attempts[0]!.metadata.k![0]!.length,
        LIMITS.maxNodeMetadataBytes - 1,
      );
    });

    test('claim and finish on an unknown run are NotFoundError', async (h) => {
      const alice = await h.agent('alice');
      await assert.rejects(alice.claim('01ARZ3NDEKTSV4RRFFQ69G5FAV', 'a'), NotFoundError);
      await assert.rejects(
        h.repo.finish({
          runId: '01ARZ3NDEKTSV4RRFFQ69G5FAV',
          node: 'a',
          claimId: 'x',
          conclusion: 'SUCCESS',
        }),
        NotFoundError,
      );
    });

    test('a claim under a revoked lease is LeaseExpiredError and claims nothing', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      await h.repo.revokeLease(alice.lease.id);
      await assert.rejects(alice.claim(run.id, 'a'), LeaseExpiredError);
      assert.equal((await h.node(run.id, 'a')).status, 'READY');
    });
  });
}
