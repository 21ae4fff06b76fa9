/** Rule 8 (subscribe) and watch: what a listener sees, whenever it joins, and how streams end. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { NodeStatus, Run } from '../../src/model/types.js';
import { NotFoundError } from '../../src/protocol/errors.js';
import type { WatchEvent } from '../../src/protocol/repository.js';
import { exampleDag, graph, node } from './fixtures.js';
import { Collector, type ConformanceTest, eventNodes, namesIn, sawAll } from './harness.js';

/** Each node's statuses in the order a watcher saw them, repeats collapsed. */
function statusTrail(events: WatchEvent[]): Record<string, NodeStatus[]> {
  const trail: Record<string, NodeStatus[]> = {};
  for (const e of events) {
    if (e.type !== 'node') continue;
    const name = e.node.spec.name;
    trail[name] ??= [];
    const list = trail[name];
    if (list[list.length - 1] !== e.node.status) list.push(e.node.status);
  }
  return trail;
}

export function streamsSpec(test: ConformanceTest): void {
  describe('subscribe (rule 8)', () => {
    test('a subscriber that joins late sees every node READY now, then the later ones', async (h) => {
      const alice = await h.agent('alice');
      const runs: Run[] = [];
      for (let i = 0; i < 5; i++) runs.push(await h.start(exampleDag()));
      for (const run of runs.slice(0, 3)) for (const n of ['a', 'b']) await alice.run(run.id, n, 'SUCCESS'); // c d f READY
      const a3 = await alice.mustClaim(runs[3]!.id, 'a'); // b READY, a RUNNING
      await h.repo.cancel(runs[4]!.id); // nothing READY

      const events = h.subscribe();
      const readyNow = await Promise.all(runs.map(async (r) => namesIn(await h.repo.inspect(r.id), 'READY')));
      assert.deepEqual(readyNow, [['c', 'd', 'f'], ['c', 'd', 'f'], ['c', 'd', 'f'], ['b'], []]);
      await events.waitFor('NODE_READY for every READY node', (e) =>
        runs.every((r, i) => sawAll(e, r.id, readyNow[i]!)),
      );
      for (const [i, r] of runs.entries())
        assert.deepEqual(eventNodes(events.items, r.id), readyNow[i], `only READY nodes of run ${i}`);

      await alice.finish(a3, 'SUCCESS');
      await events.waitFor('NODE_READY for c after a succeeded', (e) => sawAll(e, runs[3]!.id, ['b', 'c']));
    });

    test('a reconnecting subscriber misses nothing that became READY while it was away', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(
        graph(
          ['a', 'b', 'c'],
          [
            ['a', 'b'],
            ['a', 'c'],
          ],
        ),
      );
      const first = h.subscribe();
      await first.waitFor('NODE_READY for a', (e) => sawAll(e, run.id, ['a']));
      await first.stop();
      await alice.run(run.id, 'a', 'SUCCESS');
      const second = h.subscribe();
      await second.waitFor('NODE_READY for b and c', (e) => sawAll(e, run.id, ['b', 'c']));
    });

    test('a subscriber gets events for its runtimes only; every subscriber gets them', async (h) => {
      const alpha = h.subscribe(['alpha']);
      const alsoAlpha = h.subscribe(['alpha']);
      const both = h.subscribe(['alpha', 'beta']);
      const beta = h.subscribe(['beta']);
      const run = await h.start(
        graph([
          node('a1', { runtime: 'alpha' }),
          node('b1', { runtime: 'beta' }),
          node('b2', { runtime: 'beta' }),
        ]),
      );
      await beta.waitFor('beta events', (e) => sawAll(e, run.id, ['b1', 'b2']));
      await both.waitFor('alpha and beta events', (e) => sawAll(e, run.id, ['a1', 'b1', 'b2']));
      await alsoAlpha.waitFor('alpha events, second subscriber', (e) => sawAll(e, run.id, ['a1']));
      // A later alpha event: once alpha has it, any beta event sent to alpha would have arrived too.
      const later = await h.start(graph([node('a2', { runtime: 'alpha' })]));
      await alpha.waitFor('alpha events', (e) => sawAll(e, run.id, ['a1']) && sawAll(e, later.id, ['a2']));
      assert.deepEqual(eventNodes(alpha.items, run.id), ['a1']);
      assert.deepEqual(eventNodes(beta.items, run.id), ['b1', 'b2']);
      for (const e of [...alpha.items, ...beta.items, ...both.items])
        assert.equal(
          e.runtime,
          run.nodes.concat(later.nodes).find((n) => n.spec.name === e.node)!.spec.runtime,
        );
      assert.ok(!beta.items.some((e) => e.runId === later.id));
    });

    test('a subscription ends cleanly when its signal aborts', async (h) => {
      const idle = h.subscribe(['nothing-runs-here']);
      await idle.stop(); // the for-await loop exits without throwing, though no event ever came
      assert.equal(idle.ended, true);

      await h.start(graph(['a']));
      const busy = h.subscribe();
      await busy.waitFor('an event', (e) => e.length > 0);
      await busy.stop();

      const aborted = new AbortController();
      aborted.abort();
      const none = new Collector((_signal) =>
        h.repo.subscribe({ runtimes: ['conformance'], signal: aborted.signal }),
      );
      await none.waitForEnd('a subscription whose signal had already aborted');
    });
  });

  describe('watch', () => {
    test('a snapshot first, then each node transition, ending once the run completes', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b'], [['a', 'b']]));
      const watcher = h.watch(run.id);
      await watcher.waitFor('the snapshot', (e) => e.length > 0);
      const first = watcher.items[0]!;
      assert.ok(first.type === 'snapshot', 'the first event is the snapshot');
      assert.equal(first.run.id, run.id);
      assert.deepEqual(namesIn(first.run, 'READY'), ['a']);

      await alice.run(run.id, 'a', 'SUCCESS', 'A');
      await alice.run(run.id, 'b', 'SUCCESS', 'B');
      await watcher.waitForEnd('the watch of a completed run');

      const events = watcher.items.slice(1);
      assert.ok(
        events.every((e) => e.type === 'node' && e.runId === run.id),
        'node events of this run only',
      );
      assert.deepEqual(statusTrail(events), {
        a: ['RUNNING', 'COMPLETED'],
        b: ['READY', 'RUNNING', 'COMPLETED'],
      });
      const last = events[events.length - 1]!;
      assert.ok(last.type === 'node');
      assert.equal(last.runStatus, 'COMPLETED');
      assert.equal(last.runConclusion, 'SUCCESS');
      const running = events.find((e) => e.type === 'node' && e.node.status === 'RUNNING');
      assert.ok(running?.type === 'node' && running.runStatus === 'RUNNING');
    });

    test('a cancelled run ends its watch with the CANCELLED conclusion', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a', 'b']));
      await alice.mustClaim(run.id, 'a');
      const watcher = h.watch(run.id);
      await watcher.waitFor('the snapshot', (e) => e.length > 0);
      await h.repo.cancel(run.id);
      await watcher.waitForEnd('the watch of a cancelled run');
      const last = watcher.items[watcher.items.length - 1]!;
      assert.ok(last.type === 'node');
      assert.equal(last.runStatus, 'COMPLETED');
      assert.equal(last.runConclusion, 'CANCELLED');
      assert.deepEqual(statusTrail(watcher.items), { a: ['COMPLETED'], b: ['COMPLETED'] });
    });

    test('watching a completed run gives its snapshot and ends', async (h) => {
      const alice = await h.agent('alice');
      const run = await h.start(graph(['a']));
      await alice.run(run.id, 'a', 'SUCCESS');
      const watcher = h.watch(run.id);
      await watcher.waitForEnd('the watch of an already completed run');
      assert.equal(watcher.items.length, 1);
      const only = watcher.items[0]!;
      assert.ok(only.type === 'snapshot');
      assert.equal(only.run.conclusion, 'SUCCESS');
    });

    test('a watch ends cleanly when its signal aborts; an unknown run is NotFoundError', async (h) => {
      const run = await h.start(graph(['a']));
      const watcher = h.watch(run.id);
      await watcher.waitFor('the snapshot', (e) => e.length > 0);
      await watcher.stop();
      const unknown = h.watch('01ARZ3NDEKTSV4RRFFQ69G5FAV');
      await assert.rejects(unknown.waitForEnd('the watch of an unknown run'), NotFoundError);
    });
  });
}
