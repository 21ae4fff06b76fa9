/** Rule 15: retrying (resuming) a completed run that did not succeed. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { graph, inputsAsText, node } from './fixtures.js';
import { type ConformanceTest, namesIn } from './harness.js';

const conflict = (e: { code?: string }) => e.code === 'conflict';

export function resumeSpec(test: ConformanceTest): void {
  describe('retry a run (rule 15)', () => {
    test('a failed run resumes from its failed node, keeps what succeeded, twice in a row', async (h) => {
      const run = await h.start(
        graph(
          ['a', 'b', 'c'],
          [
            ['a', 'b'],
            ['c', 'b'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'c', 'SUCCESS', 'c out');
      await alice.run(run.id, 'a', 'FAIL', 'a try 1');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');

      const events = h.subscribe();
      const resumed = await h.repo.retry(run.id);
      assert.equal(resumed.id, run.id, 'same run');
      assert.equal(resumed.status, 'RUNNING');
      assert.equal(resumed.conclusion, undefined);
      assert.ok(!resumed.finishedAt, 'finished_at cleared');
      assert.deepEqual(namesIn(resumed, 'READY'), ['a']);
      assert.deepEqual(namesIn(resumed, 'WAITING'), ['b']);
      assert.deepEqual(namesIn(resumed, 'COMPLETED'), ['c'], 'the succeeded node stays');
      await events.waitForItem(
        'NODE_READY for the retried a',
        (e) => e.type === 'NODE_READY' && e.node === 'a',
      );
      await alice.run(run.id, 'a', 'FAIL', 'a try 2');
      let state = await h.repo.inspect(run.id);
      assert.equal(state.conclusion, 'FAIL');
      assert.equal(state.nodes.find((n) => n.spec.name === 'b')!.status, 'COMPLETED');

      await h.repo.retry(run.id);
      await alice.run(run.id, 'a', 'SUCCESS', 'a try 3');
      const b = await alice.mustClaim(run.id, 'b');
      assert.deepEqual(
        inputsAsText(b.node.inputs),
        { a: 'a try 3', c: 'c out' },
        'kept outputs feed the retry',
      );
      await alice.finish(b, 'SUCCESS');
      state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'SUCCESS');
      assert.ok(state.finishedAt);
      const a = state.nodes.find((n) => n.spec.name === 'a')!;
      assert.deepEqual(
        a.attempts.map((x) => x.conclusion),
        ['FAIL', 'FAIL', 'SUCCESS'],
        'every earlier attempt is kept',
      );
      assert.equal(a.attemptsBeforeRetry, 2);
      assert.deepEqual(
        state.nodes.find((n) => n.spec.name === 'c')!.attempts.map((x) => x.conclusion),
        ['SUCCESS'],
        'the succeeded node did not run again',
      );
    });

    test('a cancelled run resumes: its cancelled and unreached nodes run again, twice in a row', async (h) => {
      const run = await h.start(graph(['a', 'b', 'c'], [['a', 'b']]));
      const alice = await h.agent('alice');
      await alice.run(run.id, 'c', 'SUCCESS');
      for (let round = 1; round <= 2; round++) {
        const claimed = await alice.mustClaim(run.id, 'a');
        await h.repo.cancel(run.id);
        assert.equal((await h.repo.inspect(run.id)).conclusion, 'CANCELLED');
        const resumed = await h.repo.retry(run.id);
        assert.equal(resumed.status, 'RUNNING', `round ${round}`);
        assert.deepEqual(namesIn(resumed, 'READY'), ['a']);
        assert.deepEqual(namesIn(resumed, 'WAITING'), ['b']);
        // The cancelled claim stays refused: its attempt was recorded CANCELLED.
        await assert.rejects(alice.finish(claimed, 'SUCCESS'), conflict);
      }
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.conclusion, 'SUCCESS');
      assert.deepEqual(
        state.nodes.find((n) => n.spec.name === 'a')!.attempts.map((x) => x.conclusion),
        ['CANCELLED', 'CANCELLED', 'SUCCESS'],
      );
    });

    test('named nodes go back with everything downstream of them; other failures stay', async (h) => {
      const run = await h.start(
        graph(
          ['a', 'b', 'c', 'd'],
          [
            ['a', 'b'],
            ['a', 'c'],
            ['b', 'd'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'FAIL');
      await alice.run(run.id, 'c', 'FAIL');
      const resumed = await h.repo.retry(run.id, ['b']);
      assert.deepEqual(namesIn(resumed, 'READY'), ['b']);
      assert.deepEqual(namesIn(resumed, 'WAITING'), ['d']);
      await alice.run(run.id, 'b', 'SUCCESS');
      await alice.run(run.id, 'd', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'FAIL', 'c, not named, still failed');

      // Naming a node that succeeded runs it and its downstream again.
      const again = await h.repo.retry(run.id, ['a']);
      assert.deepEqual(namesIn(again, 'READY'), ['a']);
      assert.deepEqual(namesIn(again, 'WAITING'), ['b', 'c', 'd']);
      await assert.rejects(h.repo.retry(run.id, ['nope']), conflict, 'a running run is refused first');
    });

    test('a node put back that completes unreached counts as neither: its old attempt does not count (rule 14)', async (h) => {
      const run = await h.start(
        graph(
          ['a', 'b', 'c', 'z', node('onfail', { trigger: 'one_failed' })],
          [
            ['a', 'b'],
            ['b', 'c'],
            ['b', 'onfail'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'SUCCESS', 'b-out');
      await alice.run(run.id, 'c', 'SUCCESS');
      await alice.run(run.id, 'z', 'FAIL');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');
      await h.repo.retry(run.id, ['a']); // a and everything downstream of it go back
      await alice.run(run.id, 'a', 'FAIL'); // b: unreached, and so c (not READY on b's old SUCCESS)
      const state = await h.repo.inspect(run.id);
      const byName = Object.fromEntries(state.nodes.map((n) => [n.spec.name, n]));
      assert.equal(byName.b!.status, 'COMPLETED');
      assert.equal(byName.c!.status, 'COMPLETED', "c is not READY on b's SUCCESS from before the retry");
      assert.equal(byName.c!.attempts.length, 1, 'no new attempt of c');
      assert.equal(byName.onfail!.status, 'COMPLETED', 'b did not fail either');
      assert.equal(byName.onfail!.attempts.length, 0);
      assert.equal(state.status, 'COMPLETED');
      assert.equal(state.conclusion, 'FAIL');
    });

    test("a node put back that completed unreached is put back again, and its old output is nobody's input", async (h) => {
      const run = await h.start(
        graph(
          ['a', 'b', 'x', 'z', node('w', { trigger: 'all_done' })],
          [
            ['a', 'b'],
            ['b', 'w'],
            ['x', 'w'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'SUCCESS', 'b-out');
      await alice.run(run.id, 'x', 'SUCCESS', 'x-out');
      await alice.run(run.id, 'w', 'SUCCESS');
      await alice.run(run.id, 'z', 'FAIL');
      await h.repo.retry(run.id, ['a']); // a, b and w go back
      await alice.run(run.id, 'a', 'FAIL'); // b: unreached; w (all_done) runs
      const w = await alice.mustClaim(run.id, 'w');
      assert.deepEqual(
        inputsAsText(w.node.inputs),
        { x: 'x-out' },
        "b's SUCCESS from before the retry is no input",
      );
      await alice.finish(w, 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');

      // A plain retry puts back what did not succeed since it was last put back: b too, though its last attempt
      // is that old SUCCESS.
      const resumed = await h.repo.retry(run.id);
      assert.deepEqual(namesIn(resumed, 'READY'), ['a', 'z']);
      assert.deepEqual(namesIn(resumed, 'WAITING'), ['b']);
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'SUCCESS');
      await alice.run(run.id, 'z', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.conclusion, 'SUCCESS');
      assert.deepEqual(
        state.nodes.find((n) => n.spec.name === 'b')!.attempts.map((x) => x.conclusion),
        ['SUCCESS', 'SUCCESS'],
        'b ran again',
      );
    });

    test('a named retry that would leave a cancelled node as it is is refused: the run could never succeed', async (h) => {
      const run = await h.start(graph(['p', 'q']));
      const alice = await h.agent('alice');
      await alice.mustClaim(run.id, 'p');
      await alice.mustClaim(run.id, 'q');
      await h.repo.cancel(run.id);
      await assert.rejects(h.repo.retry(run.id, ['q']), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'invalid_argument');
        assert.match(e.message, /"p"/);
        return true;
      });
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'CANCELLED', 'a refused retry changes nothing');
      const both = await h.repo.retry(run.id, ['p', 'q']);
      assert.deepEqual(namesIn(both, 'READY'), ['p', 'q']);
    });

    test('retry budgets count attempts since the retry', async (h) => {
      const run = await h.start(graph([node('a', { retry: { fail: 2 } })]));
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'FAIL');
      await alice.run(run.id, 'a', 'FAIL');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');
      await h.repo.retry(run.id);
      const claimed = await alice.mustClaim(run.id, 'a');
      assert.equal(claimed.attempt, 3);
      await alice.finish(claimed, 'FAIL');
      assert.equal((await h.node(run.id, 'a')).status, 'READY', 'a fresh budget of 2');
      await alice.run(run.id, 'a', 'FAIL');
      const a = await h.node(run.id, 'a');
      assert.equal(a.status, 'COMPLETED');
      assert.equal(a.attempts.length, 4);
    });

    test('trigger rules are judged again on retry', async (h) => {
      const run = await h.start(
        graph(
          ['a', node('onfail', { trigger: 'one_failed' }), node('cleanup', { trigger: 'all_done' })],
          [
            ['a', 'onfail'],
            ['a', 'cleanup'],
          ],
        ),
      );
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'FAIL');
      await alice.run(run.id, 'onfail', 'SUCCESS');
      await alice.run(run.id, 'cleanup', 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');
      const resumed = await h.repo.retry(run.id);
      assert.deepEqual(namesIn(resumed, 'READY'), ['a']);
      await alice.run(run.id, 'a', 'SUCCESS');
      const state = await h.repo.inspect(run.id);
      assert.equal(state.status, 'COMPLETED', 'the handlers that succeeded stay as they were');
      assert.equal(state.conclusion, 'SUCCESS');
    });

    test('a run whose every node went back is WAITING (rule 7); a watch follows it to its new end', async (h) => {
      const run = await h.start(graph(['a']));
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'FAIL');
      const resumed = await h.repo.retry(run.id);
      assert.equal(resumed.status, 'WAITING', 'nothing claimed or completed yet');
      const watch = h.watch(run.id);
      await watch.waitForItem('the snapshot', (e) => e.type === 'snapshot');
      await alice.run(run.id, 'a', 'SUCCESS');
      await watch.waitForItem(
        'the run completing again',
        (e) => e.type === 'node' && e.runStatus === 'COMPLETED' && e.runConclusion === 'SUCCESS',
      );
      await watch.waitForEnd('the watch to end with the run');
    });

    test('a retry of a running or succeeded run is refused; bad names and runs are named', async (h) => {
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      await assert.rejects(h.repo.retry(run.id), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'conflict');
        assert.match(e.message, new RegExp(run.id));
        return true;
      });
      const alice = await h.agent('alice');
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'b', 'SUCCESS');
      await assert.rejects(h.repo.retry(run.id), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'conflict');
        assert.match(e.message, /succeeded/);
        return true;
      });
      const failed = await h.start(graph(['x']));
      await alice.run(failed.id, 'x', 'FAIL');
      await assert.rejects(h.repo.retry(failed.id, ['nope']), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'invalid_argument');
        assert.match(e.message, /"nope"/);
        return true;
      });
      assert.equal((await h.repo.inspect(failed.id)).conclusion, 'FAIL', 'a refused retry changes nothing');
      await assert.rejects(
        h.repo.retry('01ARZ3NDEKTSV4RRFFQ69G5FAV'),
        (e: { code?: string }) => e.code === 'not_found',
      );
    });
  });
}
