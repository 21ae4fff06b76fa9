/** Rule 14: trigger rules decide whether a node runs once its upstream nodes completed. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { TriggerRule } from '../../src/model/types.js';
import { graph, inputsAsText, node } from './fixtures.js';
import { type ConformanceTest, namesIn } from './harness.js';

type Outcome = 'succeeded' | 'failed' | 'unreached';

/** What each rule says of two upstream nodes that completed so, written out (not computed). */
const TABLE: { mix: [Outcome, Outcome]; runs: TriggerRule[] }[] = [
  {
    mix: ['succeeded', 'succeeded'],
    runs: ['all_success', 'all_done', 'one_success', 'none_failed'],
  },
  { mix: ['succeeded', 'failed'], runs: ['all_done', 'one_failed', 'one_success'] },
  { mix: ['failed', 'failed'], runs: ['all_done', 'all_failed', 'one_failed'] },
  { mix: ['succeeded', 'unreached'], runs: ['all_done', 'one_success', 'none_failed'] },
  { mix: ['failed', 'unreached'], runs: ['all_done', 'one_failed'] },
  { mix: ['unreached', 'unreached'], runs: ['all_done', 'none_failed'] },
];

const RULES: TriggerRule[] = [
  'all_success',
  'all_done',
  'all_failed',
  'one_failed',
  'one_success',
  'none_failed',
];

export function triggersSpec(test: ConformanceTest): void {
  describe('trigger rules (rule 14)', () => {
    for (const { mix, runs } of TABLE) {
      test(`upstream ${mix.join(' + ')}: ${runs.join(', ')} run, the others are unreached`, async (h) => {
        // u1, u2 feed one handler per rule; an "unreached" upstream sits below z, which fails first.
        const edges: [string, string][] = [];
        for (const r of RULES) edges.push(['u1', r], ['u2', r]);
        mix.forEach((o, i) => {
          if (o === 'unreached') edges.push(['z', `u${i + 1}`]);
        });
        const run = await h.start(
          graph(['z', 'u1', 'u2', ...RULES.map((r) => node(r, { trigger: r }))], edges),
        );
        const alice = await h.agent('alice');
        const unreached = mix.includes('unreached');
        await alice.run(run.id, 'z', unreached ? 'FAIL' : 'SUCCESS');
        for (const [i, o] of mix.entries())
          if (o !== 'unreached') await alice.run(run.id, `u${i + 1}`, o === 'succeeded' ? 'SUCCESS' : 'FAIL');
        const state = await h.repo.inspect(run.id);
        assert.deepEqual(
          namesIn(state, 'READY'),
          [...runs].sort(),
          'the handlers whose rule holds are READY',
        );
        for (const r of RULES.filter((x) => !runs.includes(x))) {
          const n = state.nodes.find((x) => x.spec.name === r)!;
          assert.equal(n.status, 'COMPLETED', `${r} unreached`);
          assert.deepEqual(n.attempts, [], `${r} has no attempt`);
        }
        assert.equal(
          state.nodes.find((x) => x.spec.name === 'all_done')!.spec.trigger,
          'all_done',
          'the trigger is part of the stored spec',
        );
        for (const r of runs) await alice.run(run.id, r, 'SUCCESS');
        const final = await h.repo.inspect(run.id);
        assert.equal(final.status, 'COMPLETED');
        // FAIL when any node's final attempt failed (z, or an upstream), whatever the handlers did.
        assert.equal(final.conclusion, unreached || mix.includes('failed') ? 'FAIL' : 'SUCCESS');
      });
    }

    test('a handler waits for all its upstream nodes; all_success below a failure is unreached at once', async (h) => {
      const run = await h.start(
        graph(
          [
            'a',
            'b',
            node('onfail', { trigger: 'one_failed' }),
            'next',
            node('cleanup', { trigger: 'all_done' }),
          ],
          [
            ['a', 'onfail'],
            ['b', 'onfail'],
            ['a', 'next'],
            ['b', 'next'],
            ['onfail', 'cleanup'],
            ['next', 'cleanup'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      const b = await alice.mustClaim(run.id, 'b');
      await alice.run(run.id, 'a', 'FAIL', 'a said no');
      let state = await h.repo.inspect(run.id);
      assert.equal(
        state.nodes.find((n) => n.spec.name === 'next')!.status,
        'COMPLETED',
        'next unreached at once',
      );
      assert.equal(
        state.nodes.find((n) => n.spec.name === 'onfail')!.status,
        'WAITING',
        'onfail waits for b',
      );
      assert.equal(state.nodes.find((n) => n.spec.name === 'cleanup')!.status, 'WAITING');
      await alice.finish(b, 'SUCCESS', 'b output');
      state = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(state, 'READY'), ['onfail']);
      const handler = await alice.mustClaim(run.id, 'onfail');
      assert.deepEqual(
        inputsAsText(handler.node.inputs),
        { b: 'b output' },
        'inputs from succeeded upstream only',
      );
      await alice.finish(handler, 'SUCCESS');
      assert.deepEqual(
        await h.namesIn(run.id, 'READY'),
        ['cleanup'],
        'cleanup runs after an unreached upstream',
      );
      await alice.run(run.id, 'cleanup', 'SUCCESS');
      const final = await h.repo.inspect(run.id);
      assert.equal(final.status, 'COMPLETED');
      assert.equal(final.conclusion, 'FAIL', 'a handled failure still fails the run');
    });

    test('a handler that is not needed is unreached, cascades by its dependents’ rules, and the run succeeds', async (h) => {
      const run = await h.start(
        graph(
          ['a', node('onfail', { trigger: 'one_failed' }), 'after', node('always', { trigger: 'all_done' })],
          [
            ['a', 'onfail'],
            ['onfail', 'after'],
            ['onfail', 'always'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      const events = h.subscribe();
      await alice.run(run.id, 'a', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(state, 'COMPLETED'), ['a', 'after', 'onfail']);
      assert.deepEqual(namesIn(state, 'READY'), ['always']);
      await events.waitForItem(
        'NODE_READY for always',
        (e) => e.type === 'NODE_READY' && e.node === 'always',
      );
      await alice.run(run.id, 'always', 'SUCCESS');
      const final = await h.repo.inspect(run.id);
      assert.equal(final.conclusion, 'SUCCESS', 'unreached handlers fail nothing');
    });

    test('an unknown trigger is refused, naming it', async (h) => {
      await assert.rejects(
        h.repo.start(graph([node('a'), { ...node('b'), trigger: 'sometimes' as TriggerRule }], [['a', 'b']])),
        (e: Error) => /trigger "sometimes"/.test(e.message),
      );
    });
  });
}
