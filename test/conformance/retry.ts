/** Rule 5's retry policy: `retry[conclusion].max_attempts` counts attempts of that conclusion. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { FinishConclusion, NodeEvent } from '../../src/protocol/repository.js';
import { exampleDag, graph, inputsAsText, node, text } from './fixtures.js';
import { type ConformanceTest, type Harness, namesIn } from './harness.js';

/**
 * Runs node `name` of the run through the given conclusions, one claim each,
 * checking after every attempt whether it went back to READY (with a new
 * NODE_READY event) or completed.
 */
async function attemptSequence(
  h: Harness,
  runId: string,
  name: string,
  steps: { conclusion: FinishConclusion; becomes: 'READY' | 'COMPLETED' }[],
): Promise<void> {
  const events = h.subscribe();
  const agent = await h.agent(`retrier-${name}`);
  const isReady = (e: NodeEvent) => e.type === 'NODE_READY' && e.runId === runId && e.node === name;
  await events.waitForItem(`NODE_READY for ${name}`, isReady);
  for (const [i, step] of steps.entries()) {
    const mark = events.mark();
    const claimed = await agent.mustClaim(runId, name);
    assert.equal(claimed.attempt, i + 1, `attempt number of claim ${i + 1}`);
    await agent.finish(claimed, step.conclusion, `attempt ${i + 1}`);
    const n = await h.node(runId, name);
    assert.equal(n.status, step.becomes, `after attempt ${i + 1} (${step.conclusion})`);
    assert.deepEqual(
      n.attempts.map((a) => a.conclusion),
      steps.slice(0, i + 1).map((s) => s.conclusion),
      'attempts accumulate',
    );
    const last = n.attempts[i]!;
    assert.equal(last.claimId, claimed.claimId);
    assert.equal(last.agentId, agent.id);
    assert.equal(text(last.output), `attempt ${i + 1}`);
    if (step.becomes === 'READY')
      await events.waitForItem(`a new NODE_READY for ${name} after attempt ${i + 1}`, isReady, {
        after: mark,
      });
  }
}

export function retrySpec(test: ConformanceTest): void {
  describe('retries (rule 5)', () => {
    test('FAIL with attempts left returns the node to READY; a later SUCCESS carries on', async (h) => {
      const run = await h.start(graph([node('a', { retry: { fail: 3 } }), 'b'], [['a', 'b']]));
      await attemptSequence(h, run.id, 'a', [
        { conclusion: 'FAIL', becomes: 'READY' },
        { conclusion: 'FAIL', becomes: 'READY' },
        { conclusion: 'SUCCESS', becomes: 'COMPLETED' },
      ]);
      const alice = await h.agent('alice');
      const b = await alice.mustClaim(run.id, 'b');
      assert.deepEqual(inputsAsText(b.node.inputs), { a: 'attempt 3' }, 'inputs are the successful output');
      await alice.finish(b, 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'SUCCESS', 'the last attempt of every node succeeded');
    });

    test('ERROR with attempts left returns the node to READY', async (h) => {
      const run = await h.start(graph([node('a', { retry: { error: 2 } })]));
      await attemptSequence(h, run.id, 'a', [
        { conclusion: 'ERROR', becomes: 'READY' },
        { conclusion: 'SUCCESS', becomes: 'COMPLETED' },
      ]);
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test('exhausted retries complete the node, leave downstream unreached, and fail the run', async (h) => {
      const run = await h.start(exampleDag({ a: { retry: { fail: 2 } } }));
      await attemptSequence(h, run.id, 'a', [
        { conclusion: 'FAIL', becomes: 'READY' },
        { conclusion: 'FAIL', becomes: 'COMPLETED' },
      ]);
      const alice = await h.agent('alice');
      const state = await h.repo.inspect(run.id);
      // Everything below a (c, d, e, g) is unreached; b and f are not below a.
      for (const name of ['c', 'd', 'e', 'g']) {
        const n = state.nodes.find((x) => x.spec.name === name)!;
        assert.equal(n.status, 'COMPLETED', `${name} unreached`);
        assert.deepEqual(n.attempts, []);
      }
      assert.deepEqual(namesIn(state, 'READY'), ['b']);
      await alice.run(run.id, 'b', 'SUCCESS');
      await alice.run(run.id, 'f', 'SUCCESS');
      const final = await h.repo.inspect(run.id);
      assert.equal(final.status, 'COMPLETED');
      assert.equal(final.conclusion, 'FAIL');
    });

    test('max_attempts counts attempts of its own conclusion only', async (h) => {
      // fail: 2, error: 2. Four attempts in all; neither budget is spent until its second use.
      const run = await h.start(graph([node('a', { retry: { fail: 2, error: 2 } })]));
      await attemptSequence(h, run.id, 'a', [
        { conclusion: 'FAIL', becomes: 'READY' }, // fail 1 of 2
        { conclusion: 'ERROR', becomes: 'READY' }, // error 1 of 2: two attempts so far, still READY
        { conclusion: 'ERROR', becomes: 'COMPLETED' }, // error 2 of 2: spent, though only one FAIL was used
      ]);
      const final = await h.repo.inspect(run.id);
      assert.equal(final.conclusion, 'FAIL');

      const run2 = await h.start(graph([node('x', { retry: { fail: 3, error: 2 } })]));
      await attemptSequence(h, run2.id, 'x', [
        { conclusion: 'FAIL', becomes: 'READY' },
        { conclusion: 'ERROR', becomes: 'READY' },
        { conclusion: 'FAIL', becomes: 'READY' }, // fail 2 of 3
        { conclusion: 'FAIL', becomes: 'COMPLETED' }, // fail 3 of 3
      ]);
    });

    test('a policy for one conclusion does not retry the other; no policy or max_attempts 1 means no retry', async (h) => {
      const run = await h.start(
        graph([
          node('fail-only', { retry: { fail: 5 } }),
          node('error-only', { retry: { error: 5 } }),
          node('none'),
          node('once', { retry: { fail: 1, error: 1 } }),
        ]),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'fail-only', 'ERROR');
      await alice.run(run.id, 'error-only', 'FAIL');
      await alice.run(run.id, 'none', 'FAIL');
      await alice.run(run.id, 'once', 'ERROR');
      const state = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(state, 'COMPLETED'), ['error-only', 'fail-only', 'none', 'once']);
      assert.equal(state.conclusion, 'FAIL');
    });
  });
}
