/** Reading runs back: listRuns (order, window, limit, cursor), stats, and deleting old runs. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { LIMITS } from '../../src/model/limits.js';
import type { Run } from '../../src/model/types.js';
import { NotFoundError } from '../../src/protocol/errors.js';
import type { ListRunsQuery } from '../../src/protocol/repository.js';
import { exampleDag, graph, node } from './fixtures.js';
import { type ConformanceTest, clockPast, eventually, type Harness } from './harness.js';

/** Starts `count` one-node runs, each in a later millisecond than the one before. */
async function startSpaced(h: Harness, count: number): Promise<Run[]> {
  const runs: Run[] = [];
  for (let i = 0; i < count; i++) {
    // A millisecond of slack: the store may read its clock a little after ours.
    if (runs.length > 0) await clockPast(Date.parse(runs[runs.length - 1]!.createdAt) + 1);
    runs.push(await h.start(graph(['only'])));
  }
  return runs;
}

/** Every page of a query, following cursors; fails on a runaway cursor. */
async function allPages(h: Harness, query: ListRunsQuery): Promise<string[][]> {
  const pages: string[][] = [];
  let cursor: string | undefined;
  do {
    const page = await h.repo.listRuns({ ...query, cursor });
    pages.push(page.runs.map((r) => r.id));
    cursor = page.nextCursor;
    assert.ok(pages.length <= 100, 'paging does not end');
  } while (cursor);
  return pages;
}

export function listingSpec(test: ConformanceTest): void {
  describe('listing, stats and cleanup', () => {
    test('a run records when it finished: unset while it runs, set when it completes or is cancelled', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      await alice.run(run.id, 'a', 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).finishedAt ?? '', '', 'a running run has not finished');
      const listed = async (id: string) => (await h.repo.listRuns()).runs.find((r) => r.id === id)!;
      assert.equal((await listed(run.id)).finishedAt ?? '', '');
      await alice.run(run.id, 'b', 'FAIL');
      const done = await h.repo.inspect(run.id);
      assert.ok(done.finishedAt, 'a completed run has finished');
      const lastNode = Math.max(...done.nodes.map((n) => Date.parse(n.finishedAt)));
      assert.ok(Date.parse(done.finishedAt) >= lastNode, 'not before its last node completed');
      assert.ok(Date.parse(done.finishedAt) >= Date.parse(done.createdAt));
      // Lists show the same time (a backend may record it just after the last transition).
      await eventually(
        'the listed finish time',
        async () => (await listed(run.id)).finishedAt === (await h.repo.inspect(run.id)).finishedAt,
      );

      const cancelled = await h.start(graph(['x']));
      await alice.mustClaim(cancelled.id, 'x');
      await h.repo.cancel(cancelled.id);
      await eventually('the cancelled run to record its finish', async () =>
        Boolean((await listed(cancelled.id)).finishedAt),
      );
      const c = await h.repo.inspect(cancelled.id);
      assert.equal(c.finishedAt, (await listed(cancelled.id)).finishedAt);
    });

    test('listRuns: newest first, a limit, and a cursor through every run without duplicates or gaps', async (h) => {
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) ids.push((await h.start(graph(['only']))).id);
      const newestFirst = [...ids].reverse();

      const all = await h.repo.listRuns();
      assert.deepEqual(
        all.runs.map((r) => r.id),
        newestFirst,
      );
      assert.equal(all.nextCursor, undefined, 'no more runs: no cursor');
      const times = all.runs.map((r) => Date.parse(r.createdAt));
      assert.deepEqual(
        times,
        [...times].sort((x, y) => y - x),
        'createdAt never increases down the list',
      );

      const first = await h.repo.listRuns({ limit: 10 });
      assert.deepEqual(
        first.runs.map((r) => r.id),
        newestFirst.slice(0, 10),
      );
      assert.ok(first.nextCursor, 'more runs: a cursor');

      const pages = await allPages(h, { limit: 10 });
      assert.deepEqual(
        pages.map((p) => p.length),
        [10, 10, 5],
      );
      assert.deepEqual(pages.flat(), newestFirst);
    });

    test('listRuns: since (inclusive) and until (exclusive) bound the creation time', async (h) => {
      const runs = await startSpaced(h, 12);
      const at = runs.map((r) => Date.parse(r.createdAt));
      const since = at[3]!;
      const until = at[9]!;
      const expect = (from: number, to: number) =>
        runs
          .filter((_, i) => at[i]! >= from && at[i]! < to)
          .map((r) => r.id)
          .reverse();
      const ids = async (q: ListRunsQuery) => (await h.repo.listRuns(q)).runs.map((r) => r.id);

      assert.deepEqual(await ids({ since, until }), expect(since, until));
      assert.equal((await ids({ since, until })).length, 6, 'runs 3..8');
      assert.deepEqual(await ids({ since }), expect(since, Number.POSITIVE_INFINITY));
      assert.deepEqual(await ids({ until }), expect(0, until));
      assert.deepEqual(await ids({ since: at[11]! + 60_000 }), [], 'nothing after the last run');
      assert.deepEqual(await ids({ until: at[0]! }), [], 'nothing before the first run');

      // The cursor pages within the window.
      const pages = await allPages(h, { since, until, limit: 4 });
      assert.deepEqual(
        pages.map((p) => p.length),
        [4, 2],
      );
      assert.deepEqual(pages.flat(), expect(since, until));
    });

    test('listRuns summarises each run: status, conclusion, node counts', async (h) => {
      const alice = await h.agent('alice');
      const waiting = await h.start(exampleDag());
      const done = await h.start(graph(['x', 'y']));
      await alice.run(done.id, 'x', 'SUCCESS');
      await alice.run(done.id, 'y', 'FAIL');
      const { runs } = await h.repo.listRuns();
      const [d, w] = runs;
      assert.equal(d!.id, done.id);
      assert.equal(d!.status, 'COMPLETED');
      assert.equal(d!.conclusion, 'FAIL');
      assert.deepEqual(d!.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 2 });
      assert.equal(w!.id, waiting.id);
      assert.equal(w!.createdAt, waiting.createdAt);
      assert.equal(w!.status, 'WAITING');
      assert.equal(w!.conclusion, undefined);
      assert.deepEqual(w!.nodeCounts, { WAITING: 5, READY: 2, RUNNING: 0, COMPLETED: 0 });
    });

    test('rule 19: listRuns names the nodes that failed for good, not unreached, retried or cancelled ones', async (h) => {
      const alice = await h.agent('alice');
      const spec = graph(
        ['ok', 'bad', 'err', 'later', node('flaky', { retry: { fail: 2 } }), 'held'],
        [['bad', 'later']],
      );
      const run = await h.start(spec);
      const listed = async () => {
        const r = (await h.repo.listRuns()).runs.find((x) => x.id === run.id)!;
        return [r.failedNodes, r.failedNodeCount];
      };
      assert.deepEqual(await listed(), [[], 0]);
      await alice.run(run.id, 'ok', 'SUCCESS');
      await alice.run(run.id, 'err', 'ERROR');
      assert.deepEqual(await listed(), [['err'], 1], 'named while the run still runs');
      await alice.run(run.id, 'bad', 'FAIL'); // later: unreached, not failed
      await alice.run(run.id, 'flaky', 'FAIL'); // retried
      await alice.run(run.id, 'flaky', 'SUCCESS');
      await alice.mustClaim(run.id, 'held');
      await h.repo.cancel(run.id); // held: cancelled, not failed
      assert.deepEqual(await listed(), [['bad', 'err'], 2]);

      const ok = await h.start(graph(['x']));
      await alice.run(ok.id, 'x', 'SUCCESS');
      const summary = (await h.repo.listRuns()).runs.find((x) => x.id === ok.id)!;
      assert.deepEqual([summary.failedNodes, summary.failedNodeCount], [[], 0]);
    });

    test('rules 19 and 15: a retry clears the failed names of the nodes it puts back, until they fail again', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b', 'c', 'd'], [['a', 'd']]));
      const listed = async () => {
        const r = (await h.repo.listRuns()).runs.find((x) => x.id === run.id)!;
        return [r.status, r.failedNodes, r.failedNodeCount];
      };
      await alice.run(run.id, 'c', 'SUCCESS');
      await alice.run(run.id, 'a', 'FAIL'); // d: unreached
      await alice.run(run.id, 'b', 'ERROR');
      assert.deepEqual(await listed(), ['COMPLETED', ['a', 'b'], 2]);

      await h.repo.retry(run.id, ['a']);
      assert.deepEqual(await listed(), ['RUNNING', ['b'], 1], 'b was not put back: still failed');
      await alice.run(run.id, 'a', 'FAIL');
      assert.deepEqual(await listed(), ['COMPLETED', ['a', 'b'], 2], 'a failed again');

      await h.repo.retry(run.id);
      assert.deepEqual(await listed(), ['RUNNING', [], 0], 'every failed node went back');
      await alice.run(run.id, 'a', 'SUCCESS');
      await alice.run(run.id, 'd', 'SUCCESS');
      assert.deepEqual(await listed(), ['RUNNING', [], 0]);
      await alice.run(run.id, 'b', 'FAIL');
      assert.deepEqual(await listed(), ['COMPLETED', ['b'], 1]);
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'FAIL');

      // A node put back that then completes unreached has not failed again: its last attempt is the old FAIL.
      const chain = await h.start(graph(['u', 'v'], [['u', 'v']]));
      await alice.run(chain.id, 'u', 'SUCCESS');
      await alice.run(chain.id, 'v', 'FAIL');
      await h.repo.retry(chain.id, ['u']); // u and v (downstream) go back
      await alice.run(chain.id, 'u', 'FAIL'); // v: unreached
      const r = (await h.repo.listRuns()).runs.find((x) => x.id === chain.id)!;
      assert.deepEqual([r.status, r.failedNodes, r.failedNodeCount], ['COMPLETED', ['u'], 1]);
    });

    test('rule 19: a run with many failed nodes lists a bounded few names and counts them all', async (h) => {
      const alice = await h.agent('alice');
      const names = Array.from({ length: LIMITS.maxListedFailedNodes + 3 }, (_, i) => `n${i}`);
      const run = await h.start(graph([...names].reverse()));
      for (const n of [...names].reverse()) await alice.run(run.id, n, 'FAIL');
      const r = (await h.repo.listRuns()).runs.find((x) => x.id === run.id)!;
      assert.deepEqual(r.failedNodes, names.slice(0, LIMITS.maxListedFailedNodes));
      assert.equal(r.failedNodeCount, names.length);
    });

    test('stats count runs and nodes per status across runs and transitions', async (h) => {
      const stats = async () => {
        const s = await h.repo.stats();
        // queuedNodes, where a backend has it (admission control's cheaper read), is WAITING + READY.
        if (h.repo.queuedNodes)
          assert.equal(await h.repo.queuedNodes(), s.nodeCounts.WAITING + s.nodeCounts.READY, 'queuedNodes');
        return [s.runCount, s.nodeCounts];
      };
      assert.deepEqual(await stats(), [0, { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 }]);
      const alice = await h.agent('alice');
      const one = await h.start(exampleDag());
      const two = await h.start(exampleDag());
      assert.deepEqual(await stats(), [2, { WAITING: 10, READY: 4, RUNNING: 0, COMPLETED: 0 }]);

      const a = await alice.mustClaim(one.id, 'a');
      assert.deepEqual(await stats(), [2, { WAITING: 10, READY: 3, RUNNING: 1, COMPLETED: 0 }]);
      await alice.finish(a, 'SUCCESS'); // c becomes READY; d still waits for b
      assert.deepEqual(await stats(), [2, { WAITING: 9, READY: 4, RUNNING: 0, COMPLETED: 1 }]);
      await alice.run(one.id, 'b', 'FAIL'); // b fails: d, f, e, g unreached
      assert.deepEqual(await stats(), [2, { WAITING: 5, READY: 3, RUNNING: 0, COMPLETED: 6 }]);
      await h.repo.cancel(two.id);
      assert.deepEqual(await stats(), [2, { WAITING: 0, READY: 1, RUNNING: 0, COMPLETED: 13 }]);
      await h.start(graph(['solo']));
      assert.deepEqual(await stats(), [3, { WAITING: 0, READY: 2, RUNNING: 0, COMPLETED: 13 }]);
    });

    test(
      'deleteCompletedRunsBefore removes only completed runs created before the cutoff',
      async (h) => {
        const alice = await h.agent('alice');
        const oldDone = await h.start(graph(['x']));
        await alice.run(oldDone.id, 'x', 'SUCCESS');
        const oldCancelled = await h.start(graph(['x']));
        await h.repo.cancel(oldCancelled.id);
        const oldOpen = await h.start(graph(['x', 'y']));
        await clockPast(Date.parse(oldOpen.createdAt) + 1);
        const newDone = await h.start(graph(['x']));
        await alice.run(newDone.id, 'x', 'FAIL');
        const cutoff = Date.parse(newDone.createdAt);
        assert.ok(cutoff > Date.parse(oldOpen.createdAt), 'setup: the new run is later');

        assert.equal(await h.repo.deleteCompletedRunsBefore(cutoff), 2);
        await assert.rejects(h.repo.inspect(oldDone.id), NotFoundError);
        await assert.rejects(h.repo.inspect(oldCancelled.id), NotFoundError);
        assert.equal((await h.repo.inspect(oldOpen.id)).status, 'WAITING', 'an unfinished run stays');
        assert.equal((await h.repo.inspect(newDone.id)).conclusion, 'FAIL', 'a newer run stays');
        assert.deepEqual(
          (await h.repo.listRuns()).runs.map((r) => r.id),
          [newDone.id, oldOpen.id],
        );
        const stats = await h.repo.stats();
        assert.equal(stats.runCount, 2);
        assert.deepEqual(stats.nodeCounts, { WAITING: 0, READY: 2, RUNNING: 0, COMPLETED: 1 });

        assert.equal(await h.repo.deleteCompletedRunsBefore(Date.now() + 60_000), 1);
        assert.deepEqual(
          (await h.repo.listRuns()).runs.map((r) => r.id),
          [oldOpen.id],
        );
        assert.equal(
          await h.repo.deleteCompletedRunsBefore(Date.now() + 60_000),
          0,
          'nothing left to delete',
        );
      },
      { requires: 'retention' },
    );
  });
}
