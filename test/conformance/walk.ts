/**
 * Rules 2, 5 and 7 on the example DAG: walked layer by layer, then with a
 * failure in the middle.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { ClaimedNode } from '../../src/protocol/repository.js';
import {
  EXAMPLE_LAYERS,
  EXAMPLE_NODES,
  exampleDag,
  inputsAsText,
  outputOf,
  text,
  upstreamOf,
} from './fixtures.js';
import { type ConformanceTest, eventNodes, namesIn, sawAll, type TestAgent } from './harness.js';

export function walkSpec(test: ConformanceTest): void {
  describe('the example DAG, layer by layer (rules 2, 5, 7)', () => {
    test('each layer becomes claimable once the previous one succeeded, with exact inputs', async (h) => {
      const spec = exampleDag();
      const events = h.subscribe();
      const agents = [await h.agent('alice'), await h.agent('bob')];
      const run = await h.start(spec);
      const claimedBy = new Map<string, { agent: TestAgent; claimed: ClaimedNode }>();
      const everReady: string[] = [];
      const done: string[] = [];

      for (const [i, layer] of EXAMPLE_LAYERS.entries()) {
        everReady.push(...layer);
        const state = await h.repo.inspect(run.id);
        assert.deepEqual(namesIn(state, 'READY'), layer, `READY before layer ${i}`);
        assert.deepEqual(namesIn(state, 'COMPLETED'), [...done].sort(), `COMPLETED before layer ${i}`);
        assert.deepEqual(
          namesIn(state, 'WAITING'),
          EXAMPLE_NODES.filter((n) => !everReady.includes(n)),
          `WAITING before layer ${i}`,
        );
        assert.equal(state.status, i === 0 ? 'WAITING' : 'RUNNING', `run status before layer ${i}`);

        // A subscriber sees NODE_READY for exactly the nodes that have been READY so far.
        await events.waitFor(`NODE_READY for ${everReady}`, (e) => sawAll(e, run.id, everReady));
        assert.deepEqual(eventNodes(events.items, run.id), [...everReady].sort());

        // Trying every unfinished node claims exactly this layer.
        const open = EXAMPLE_NODES.filter((n) => !done.includes(n));
        const won = new Map<string, ClaimedNode>();
        for (const [j, name] of open.entries()) {
          const agent = agents[j % 2]!;
          const claimed = await agent.claim(run.id, name);
          if (claimed) {
            won.set(name, claimed);
            claimedBy.set(name, { agent, claimed });
          }
        }
        assert.deepEqual([...won.keys()].sort(), layer, `claimable in layer ${i}`);

        for (const [name, claimed] of won) {
          const want = Object.fromEntries(upstreamOf(spec, name).map((u) => [u, outputOf(u)]));
          assert.deepEqual(inputsAsText(claimed.node.inputs), want, `inputs of ${name}`);
          assert.equal(claimed.node.status, 'RUNNING');
          assert.equal(claimed.attempt, 1);
          assert.equal(claimed.orphan, false);
          assert.equal(claimed.runId, run.id);
        }
        const running = await h.repo.inspect(run.id);
        assert.equal(running.status, 'RUNNING', `run status with layer ${i} running`);
        assert.deepEqual(namesIn(running, 'RUNNING'), layer);
        for (const name of layer) {
          const n = running.nodes.find((x) => x.spec.name === name)!;
          assert.equal(n.claim?.id, won.get(name)!.claimId, `${name}'s claim is recorded`);
          assert.equal(n.claim?.agentId, claimedBy.get(name)!.agent.id);
          assert.equal(n.claim?.orphaned, false);
          assert.ok(n.startedAt, `${name} has a start time`);
        }

        for (const [name, claimed] of won)
          await claimedBy.get(name)!.agent.finish(claimed, 'SUCCESS', outputOf(name));
        done.push(...layer);
      }

      const final = await h.repo.inspect(run.id);
      assert.equal(final.status, 'COMPLETED');
      assert.equal(final.conclusion, 'SUCCESS');
      for (const n of final.nodes) {
        const { agent, claimed } = claimedBy.get(n.spec.name)!;
        assert.equal(n.status, 'COMPLETED');
        assert.equal(n.claim, undefined, `${n.spec.name}'s claim is released`);
        assert.equal(n.attempts.length, 1, `${n.spec.name} has one attempt`);
        const [attempt] = n.attempts;
        assert.equal(attempt!.conclusion, 'SUCCESS');
        assert.equal(attempt!.claimId, claimed.claimId);
        assert.equal(attempt!.agentId, agent.id);
        assert.equal(text(attempt!.output), outputOf(n.spec.name));
        assert.ok(attempt!.startedAt && attempt!.finishedAt, 'the attempt is timed');
        assert.ok(Date.parse(attempt!.finishedAt) >= Date.parse(attempt!.startedAt));
      }
      assert.deepEqual(eventNodes(events.items, run.id, 'NODE_ORPHANED'), []);
    });

    test('a failure in the middle: downstream unreached, independent branches go on, run FAIL', async (h) => {
      const events = h.subscribe();
      const alice = await h.agent('alice');
      const run = await h.start(exampleDag());
      for (const n of ['a', 'b']) await alice.run(run.id, n, 'SUCCESS', outputOf(n));
      const c = await alice.mustClaim(run.id, 'c');
      const f = await alice.mustClaim(run.id, 'f');

      // d fails with no retry: e (needs d) and g (needs e) are unreached, at once.
      await alice.run(run.id, 'd', 'FAIL', 'd broke');
      let state = await h.repo.inspect(run.id);
      for (const name of ['e', 'g']) {
        const n = state.nodes.find((x) => x.spec.name === name)!;
        assert.equal(n.status, 'COMPLETED', `${name} is unreached`);
        assert.deepEqual(n.attempts, [], `${name} never ran`);
      }
      const d = state.nodes.find((x) => x.spec.name === 'd')!;
      assert.deepEqual(
        d.attempts.map((a) => [a.conclusion, text(a.output)]),
        [['FAIL', 'd broke']],
      );
      assert.equal(state.status, 'RUNNING', 'c and f still run');
      assert.equal(state.conclusion, undefined);

      // The independent branches finish; their success does not revive e or g.
      await alice.finish(c, 'SUCCESS', outputOf('c'));
      await alice.finish(f, 'SUCCESS', outputOf('f'));
      assert.equal(await alice.claim(run.id, 'e'), undefined);
      assert.equal(await alice.claim(run.id, 'g'), undefined);

      state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'FAIL');
      assert.deepEqual(namesIn(state, 'COMPLETED'), EXAMPLE_NODES);
      const attempts = Object.fromEntries(state.nodes.map((n) => [n.spec.name, n.attempts.length]));
      assert.deepEqual(attempts, { a: 1, b: 1, c: 1, d: 1, e: 0, f: 1, g: 0 });

      await events.waitFor('NODE_READY for a b c d f', (e) => sawAll(e, run.id, ['a', 'b', 'c', 'd', 'f']));
      assert.deepEqual(eventNodes(events.items, run.id), ['a', 'b', 'c', 'd', 'f'], 'e and g never READY');
    });

    test('an upstream failure leaves a node that is already WAITING on other branches unreached', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(exampleDag());
      // b fails first: d, f and everything below them (e, g) are unreached; a and c still run.
      await alice.run(run.id, 'b', 'ERROR', 'no');
      assert.deepEqual(await h.namesIn(run.id, 'COMPLETED'), ['b', 'd', 'e', 'f', 'g']);
      assert.deepEqual(await h.namesIn(run.id, 'READY'), ['a']);
      await alice.run(run.id, 'a', 'SUCCESS');
      assert.deepEqual(await h.namesIn(run.id, 'READY'), ['c']);
      await alice.run(run.id, 'c', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'FAIL');
    });
  });
}
