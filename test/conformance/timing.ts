/**
 * The time rules, on the suite's injectable clock (h.advance moves the store's
 * clock and runs its time sweep; nothing here waits for real time): rule 5's
 * retry delay (backoff), rule 11's node timeout and rule 13's run deadline.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { Backoff, NodeSpec } from '../../src/model/types.js';
import type { NodeEvent } from '../../src/protocol/repository.js';
import { graph, node, text } from './fixtures.js';
import type { ConformanceTest, Harness, TestAgent } from './harness.js';
import { rejectsGraph } from './start.js';

/** Store clocks (the database's, the process's) agree to within this on one machine. */
const CLOCK_SLACK_MS = 500;

/** A node of the fixture runtime whose FAIL (and ERROR) retries wait out these backoffs. */
function delayed(
  name: string,
  fail: { maxAttempts: number; backoff?: Backoff },
  error?: { maxAttempts: number; backoff?: Backoff },
): NodeSpec {
  return { ...node(name), retry: { fail, ...(error ? { error } : {}) } };
}

const readyOf = (runId: string, name: string) => (e: NodeEvent) =>
  e.type === 'NODE_READY' && e.runId === runId && e.node === name;

/** Fails the node's current attempt and returns how long the store says the retry waits (ms), read from inspect. */
async function failAndReadDelay(h: Harness, agent: TestAgent, runId: string, name: string): Promise<number> {
  const claimed = await agent.mustClaim(runId, name);
  await agent.finish(claimed, 'FAIL');
  const n = await h.node(runId, name);
  assert.equal(n.status, 'READY', 'a FAIL with attempts left goes back to READY');
  assert.ok(n.nextAttemptAt, `${name} says when its next attempt is due`);
  const finishedAt = n.attempts.at(-1)!.finishedAt;
  return Date.parse(n.nextAttemptAt) - Date.parse(finishedAt);
}

export function timingSpec(test: ConformanceTest): void {
  describe('retry delays (rule 5, backoff)', () => {
    test('a delayed retry is neither claimable nor announced before its delay, and is both after', async (h) => {
      const run = await h.start(graph([delayed('a', { maxAttempts: 3, backoff: { initial: '10s' } })]));
      const events = h.subscribe();
      const watch = h.watch(run.id);
      const agent = await h.agent('patient');
      await events.waitForItem('NODE_READY for a', readyOf(run.id, 'a'));
      const mark = events.mark();
      const delay = await failAndReadDelay(h, agent, run.id, 'a');
      const due = (await h.node(run.id, 'a')).nextAttemptAt;
      // A loaded machine may open the watch after the FAIL: then its snapshot already says so.
      await watch.waitForItem('a watch event saying when the retry is due', (e) => {
        const node =
          e.type === 'node'
            ? e.node
            : e.type === 'snapshot'
              ? e.run.nodes.find((n) => n.spec.name === 'a')
              : undefined;
        return node?.spec.name === 'a' && node.status === 'READY' && node.nextAttemptAt === due;
      });
      assert.ok(
        Math.abs(delay - 10_000) <= CLOCK_SLACK_MS,
        `next attempt due 10 s after the FAIL, got ${delay} ms`,
      );

      assert.equal(await agent.claim(run.id, 'a'), undefined, 'not claimable at once');
      await h.advance(5_000);
      assert.equal(await agent.claim(run.id, 'a'), undefined, 'not claimable halfway through the delay');
      assert.deepEqual(
        events.items.slice(mark).filter(readyOf(run.id, 'a')),
        [],
        'no NODE_READY before the delay is over',
      );
      assert.equal((await h.node(run.id, 'a')).status, 'READY', 'READY all along');

      await h.advance(5_000 + CLOCK_SLACK_MS);
      await events.waitForItem('NODE_READY for a once its delay is over', readyOf(run.id, 'a'), {
        after: mark,
      });
      const n = await h.node(run.id, 'a');
      const claimed = await agent.mustClaim(run.id, 'a');
      assert.equal(claimed.attempt, 2);
      assert.equal(n.attempts.length, 1);
      await agent.finish(claimed, 'SUCCESS');
      const done = await h.repo.inspect(run.id);
      assert.equal(done.conclusion, 'SUCCESS');
      assert.equal(done.nodes[0]!.nextAttemptAt, undefined, 'no next attempt once completed');
    });

    test('delays grow by the factor from initial and stop at max', async (h) => {
      const run = await h.start(
        graph([delayed('a', { maxAttempts: 6, backoff: { initial: '1s', factor: 2, max: '5s' } })]),
      );
      const agent = await h.agent('persistent');
      const seen: number[] = [];
      for (const want of [1_000, 2_000, 4_000, 5_000, 5_000]) {
        const delay = await failAndReadDelay(h, agent, run.id, 'a');
        seen.push(delay);
        assert.ok(
          Math.abs(delay - want) <= CLOCK_SLACK_MS,
          `retry ${seen.length} waits ${want} ms, got ${delay} ms (so far ${JSON.stringify(seen)})`,
        );
        assert.equal(await agent.claim(run.id, 'a'), undefined, `retry ${seen.length} not claimable early`);
        await h.advance(want + CLOCK_SLACK_MS);
      }
      const last = await agent.mustClaim(run.id, 'a');
      await agent.finish(last, 'FAIL');
      const run2 = await h.repo.inspect(run.id);
      assert.equal(run2.conclusion, 'FAIL', 'the sixth FAIL is final');
      assert.equal(run2.nodes[0]!.nextAttemptAt, undefined);
    });

    test('each conclusion has its own backoff; a retry without one is claimable at once', async (h) => {
      const run = await h.start(
        graph([delayed('a', { maxAttempts: 2, backoff: { initial: '1m' } }, { maxAttempts: 2 })]),
      );
      const agent = await h.agent('mixed');
      const first = await agent.mustClaim(run.id, 'a');
      await agent.finish(first, 'ERROR');
      const n = await h.node(run.id, 'a');
      assert.equal(n.status, 'READY');
      assert.equal(n.nextAttemptAt, undefined, 'retry.error has no backoff');
      const second = await agent.mustClaim(run.id, 'a');
      await agent.finish(second, 'FAIL');
      assert.ok((await h.node(run.id, 'a')).nextAttemptAt, 'retry.fail has one');
      assert.equal(await agent.claim(run.id, 'a'), undefined);
    });

    test('cancel completes a node waiting out its delay; it is never announced', async (h) => {
      const run = await h.start(graph([delayed('a', { maxAttempts: 2, backoff: { initial: '2s' } })]));
      const events = h.subscribe();
      const agent = await h.agent('cancelled');
      await failAndReadDelay(h, agent, run.id, 'a');
      const cancelled = await h.repo.cancel(run.id);
      assert.equal(cancelled.conclusion, 'CANCELLED');
      assert.equal(cancelled.nodes[0]!.status, 'COMPLETED');
      assert.equal(cancelled.nodes[0]!.nextAttemptAt, undefined);
      const mark = events.mark();
      await h.advance(2_000 + CLOCK_SLACK_MS);
      assert.equal(await agent.claim(run.id, 'a'), undefined);
      assert.deepEqual(events.items.slice(mark).filter(readyOf(run.id, 'a')), []);
    });

    test("only a node's own retry waits: a handler made READY by its trigger after the failure is claimable at once", async (h) => {
      const handler: NodeSpec = {
        ...delayed('onfail', { maxAttempts: 2, backoff: { initial: '1m' } }),
        trigger: 'one_failed',
      };
      const run = await h.start(
        graph([delayed('a', { maxAttempts: 2, backoff: { initial: '10s' } }), handler], [['a', 'onfail']]),
      );
      const agent = await h.agent('handler');
      await failAndReadDelay(h, agent, run.id, 'a');
      await h.advance(10_000 + CLOCK_SLACK_MS);
      const last = await agent.mustClaim(run.id, 'a');
      await agent.finish(last, 'FAIL');
      const n = await h.node(run.id, 'onfail');
      assert.equal(n.status, 'READY', 'one_failed holds once a failed for good');
      assert.equal(n.nextAttemptAt, undefined, 'no delay: its backoff is for its own retries');
      const claimed = await agent.mustClaim(run.id, 'onfail');
      await agent.finish(claimed, 'SUCCESS');
      assert.equal(
        (await h.repo.inspect(run.id)).conclusion,
        'FAIL',
        'a failed for good, whatever its handler did',
      );
    });

    test('a run retried puts a node that was waiting out its delay back claimable at once', async (h) => {
      const run = await h.start(graph([delayed('a', { maxAttempts: 3, backoff: { initial: '1m' } })]));
      const agent = await h.agent('resumer');
      await failAndReadDelay(h, agent, run.id, 'a');
      assert.equal((await h.repo.cancel(run.id)).conclusion, 'CANCELLED');
      const resumed = await h.repo.retry(run.id);
      const n = resumed.nodes[0]!;
      assert.equal(n.status, 'READY');
      assert.equal(n.nextAttemptAt, undefined, 'no delay left over from before the retry');
      const claimed = await agent.mustClaim(run.id, 'a');
      await agent.finish(claimed, 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
      // Nothing left behind fires later (etcd's r: item, memory's delayed set, PostgreSQL's ready_at).
      await h.advance(60_000 + CLOCK_SLACK_MS);
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test('start refuses bad backoffs, naming every bad value', async (h) => {
      await rejectsGraph(
        (s) => h.start(s),
        graph([
          delayed('a', { maxAttempts: 3, backoff: { initial: '-1s', factor: 0.5, jitter: 1.5 } }),
          delayed('b', { maxAttempts: 3, backoff: { initial: 'soon', max: '1h' } }),
          delayed('c', { maxAttempts: 3, backoff: { initial: '1m', max: '1s' } }),
        ]),
        /node "a": retry\.fail\.backoff\.initial "-1s" is not a duration/,
        /node "a": retry\.fail\.backoff\.factor must be 1 or more, got 0\.5/,
        /node "a": retry\.fail\.backoff\.jitter must be from 0 to 1, got 1\.5/,
        /node "b": retry\.fail\.backoff\.initial "soon" is not a duration/,
        /node "c": retry\.fail\.backoff\.max "1s" is shorter than initial "1m"/,
      );
    });
  });

  describe('node timeouts (rule 11)', () => {
    test('the store ends an attempt past its timeout with ERROR while its agent stays alive; the late finish is refused', async (h) => {
      const run = await h.start(
        graph([{ ...node('a'), timeout: '30s', retry: { error: { maxAttempts: 2 } } }, 'b'], [['a', 'b']]),
      );
      const agent = await h.agent('silent');
      const first = await agent.mustClaim(run.id, 'a');
      const ref = { runId: run.id, node: 'a', claimId: first.claimId };

      await h.repo.keepAlive(agent.lease.id); // the agent is alive: only the node's timeout lapses
      await h.advance(20_000);
      let a = await h.node(run.id, 'a');
      assert.equal(a.status, 'RUNNING', 'not ended before its timeout');
      assert.deepEqual(await h.repo.claimsHeld([ref]), [true]);

      await h.repo.keepAlive(agent.lease.id);
      await h.advance(10_000 + CLOCK_SLACK_MS);
      a = await h.node(run.id, 'a');
      assert.equal(a.status, 'READY', 'an ERROR with retry.error attempts left retries');
      assert.equal(a.attempts.length, 1);
      const ended = a.attempts[0]!;
      assert.equal(ended.conclusion, 'ERROR');
      assert.equal(ended.claimId, first.claimId, "recorded under the silent agent's claim");
      assert.deepEqual(ended.metadata['adagio.timeout'], ['30s']);
      assert.match(text(ended.output), /timed out after 30s/);
      assert.deepEqual(await h.repo.claimsHeld([ref]), [false], 'the agent learns its claim is gone');
      await assert.rejects(agent.finish(first, 'SUCCESS', 'too late'), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'conflict');
        return true;
      });
      assert.equal((await h.node(run.id, 'a')).attempts.length, 1, 'the late finish recorded nothing');

      const second = await agent.mustClaim(run.id, 'a');
      assert.equal(second.attempt, 2);
      await h.repo.keepAlive(agent.lease.id);
      await h.advance(30_000 + CLOCK_SLACK_MS);
      const done = await h.repo.inspect(run.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.conclusion, 'FAIL', 'the last ERROR is final');
      assert.deepEqual(
        done.nodes.map((n) => [n.spec.name, n.attempts.map((x) => x.conclusion)]),
        [
          ['a', ['ERROR', 'ERROR']],
          ['b', []],
        ],
        'b is unreached',
      );
    });

    test('an attempt that finishes in time is not touched; a node without a timeout runs as long as it takes', async (h) => {
      const run = await h.start(graph([{ ...node('quick'), timeout: '1m' }, 'slow']));
      const agent = await h.agent('timely');
      const quick = await agent.mustClaim(run.id, 'quick');
      const slow = await agent.mustClaim(run.id, 'slow');
      await agent.finish(quick, 'SUCCESS', 'in time');
      await h.repo.keepAlive(agent.lease.id);
      await h.advance(50_000);
      await h.repo.keepAlive(agent.lease.id);
      await agent.finish(slow, 'SUCCESS');
      const done = await h.repo.inspect(run.id);
      assert.equal(done.conclusion, 'SUCCESS');
      assert.deepEqual(
        done.nodes.map((n) => n.attempts.map((x) => x.conclusion)),
        [['SUCCESS'], ['SUCCESS']],
      );
    });

    test('start refuses a bad timeout, naming it', async (h) => {
      await rejectsGraph(
        (s) => h.start(s),
        graph([
          { ...node('a'), timeout: '0' },
          { ...node('b'), timeout: 'an hour' },
        ]),
        /node "a": timeout must be longer than 0, got "0"/,
        /node "b": timeout "an hour" is not a duration/,
      );
    });
  });

  describe('run deadlines (rule 13)', () => {
    test('a run past its deadline is cancelled, its running work stopped, and it concludes TIMED_OUT', async (h) => {
      const spec = { ...graph(['a', 'b', 'c'], [['a', 'b']]), deadline: '1m' };
      const run = await h.start(spec);
      assert.ok(run.deadlineAt, 'start answers when the deadline passes');
      assert.ok(
        Math.abs(Date.parse(run.deadlineAt) - Date.parse(run.createdAt) - 60_000) <= 1,
        `deadline_at is created_at + 1m: ${run.createdAt} -> ${run.deadlineAt}`,
      );
      assert.equal((await h.repo.inspect(run.id)).deadlineAt, run.deadlineAt);
      const watch = h.watch(run.id);
      const agent = await h.agent('overrun');
      const a = await agent.mustClaim(run.id, 'a');
      const ref = { runId: run.id, node: 'a', claimId: a.claimId };

      await h.repo.keepAlive(agent.lease.id);
      await h.advance(30_000);
      assert.equal((await h.repo.inspect(run.id)).status, 'RUNNING', 'not before its deadline');

      await h.repo.keepAlive(agent.lease.id);
      await h.advance(30_000 + CLOCK_SLACK_MS);
      const done = await h.repo.inspect(run.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.conclusion, 'TIMED_OUT');
      assert.deepEqual(
        done.nodes.map((n) => [n.spec.name, n.status, n.attempts.map((x) => x.conclusion)]),
        [
          ['a', 'COMPLETED', ['CANCELLED']],
          ['b', 'COMPLETED', []],
          ['c', 'COMPLETED', []],
        ],
        'completed as by Cancel',
      );
      assert.deepEqual(await h.repo.claimsHeld([ref]), [false], 'running work learns to stop');
      await assert.rejects(
        agent.finish(a, 'SUCCESS'),
        (e: Error & { code?: string }) => e.code === 'conflict',
      );
      // A watch whose first read came after the deadline (a loaded machine) has the concluded run in its snapshot.
      await watch.waitFor('the watch ends with TIMED_OUT', (items) =>
        items.some(
          (e) =>
            (e.type === 'node' && e.runConclusion === 'TIMED_OUT') ||
            (e.type === 'snapshot' && e.run?.conclusion === 'TIMED_OUT'),
        ),
      );
      const listed = (await h.repo.listRuns()).runs.find((r) => r.id === run.id);
      assert.equal(listed?.conclusion, 'TIMED_OUT', 'lists say TIMED_OUT too');
      assert.equal((await h.repo.cancel(run.id)).conclusion, 'TIMED_OUT', 'a later cancel changes nothing');
    });

    test('a timed-out run retried (rule 15) runs on without a deadline and concludes again', async (h) => {
      const run = await h.start({ ...graph(['a', 'b'], [['a', 'b']]), deadline: '1m' });
      const agent = await h.agent('late');
      await agent.run(run.id, 'a', 'SUCCESS');
      await h.advance(60_000 + CLOCK_SLACK_MS);
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'TIMED_OUT');

      const resumed = await h.repo.retry(run.id);
      assert.equal(resumed.conclusion, undefined, 'open again: the timed-out mark is gone');
      assert.equal(resumed.deadlineAt, undefined, 'a retry lifts the deadline');
      assert.deepEqual(
        resumed.nodes.map((n) => [n.spec.name, n.status]),
        [
          ['a', 'COMPLETED'],
          ['b', 'READY'],
        ],
      );
      await h.advance(120_000);
      const open = await h.repo.inspect(run.id);
      assert.equal(open.status, 'RUNNING', 'no deadline cancels the retried run');
      assert.equal(open.deadlineAt, undefined);
      // A new agent: the clock moved past the first one's lease (memory's leases run on it).
      const resumer = await h.agent('resumer');
      await resumer.run(run.id, 'b', 'SUCCESS');
      const done = await h.repo.inspect(run.id);
      assert.equal(done.conclusion, 'SUCCESS', 'it concludes by its nodes again');
      const listed = (await h.repo.listRuns()).runs.find((r) => r.id === run.id);
      assert.equal(listed?.conclusion, 'SUCCESS', 'lists agree');
    });

    test('a run that completes before its deadline keeps its conclusion', async (h) => {
      const run = await h.start({ ...graph(['a']), deadline: '10s' });
      const agent = await h.agent('punctual');
      await agent.run(run.id, 'a', 'SUCCESS');
      await h.advance(10_000 + CLOCK_SLACK_MS);
      const done = await h.repo.inspect(run.id);
      assert.equal(done.conclusion, 'SUCCESS');
    });

    test('start refuses a bad deadline, naming it', async (h) => {
      await rejectsGraph(
        (s) => h.start(s),
        { ...graph(['a']), deadline: '2 hours' },
        /graph deadline "2 hours" is not a duration/,
      );
    });
  });
}
