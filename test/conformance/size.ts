/**
 * The protocol at the sizes users reach: a thousand runs to list, a
 * two-thousand-node graph, a wide fan-out and fan-in, a long failure cascade
 * and a cancel in the middle of a big run. Each backend splits such work to
 * fit its store (etcd's 128 operations and 1.5 MiB per transaction, one
 * PostgreSQL statement's parameters); these tests hold every split to the
 * same answers as the small cases.
 *
 * They drive the protocol directly (claims and finishes issued together, a
 * bounded number in flight), not through agents, so they stay quick on a
 * two-core CI machine.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { GraphSpec, Run } from '../../src/model/types.js';
import { ClaimConflictError } from '../../src/protocol/errors.js';
import type { ClaimedNode } from '../../src/protocol/repository.js';
import { graph, node } from './fixtures.js';
import {
  type ConformanceTest,
  eventNodes,
  type Harness,
  namesIn,
  sawAll,
  type TestAgent,
} from './harness.js';

/** Requests in flight at once: enough to overlap round trips, few enough not to swamp a loaded machine. */
const IN_FLIGHT = 16;

/** Calls `fn` on every item with at most IN_FLIGHT calls pending; results in item order. */
async function eachBounded<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, items.length) }, worker));
  return out;
}

/** Claims every named node (each must be claimable) and returns the claims in name order. */
function claimAll(agent: TestAgent, runId: string, names: string[]): Promise<ClaimedNode[]> {
  return eachBounded(names, (n) => agent.mustClaim(runId, n));
}

/** Finishes every claim with SUCCESS and an output naming its node. */
async function succeedAll(agent: TestAgent, claims: ClaimedNode[]): Promise<void> {
  await eachBounded(claims, (c) => agent.finish(c, 'SUCCESS', `out ${c.node.spec.name}`));
}

/**
 * An agent that heartbeats, as real agents do: a 2,000-node test can outlast
 * LONG_LEASE_MS on a loaded 2-core machine, and its lease must not lapse.
 */
async function workingAgent(
  h: Harness,
  name: string,
  options: { runtimes?: string[] } = {},
): Promise<TestAgent> {
  const agent = await h.agent(name, options);
  h.heartbeat(agent.lease);
  return agent;
}

const names = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${i}`);

/** `width` nodes `l0…`, each with one dependent `r<i>`: half READY at start, half WAITING. */
function twoLayers(width: number): GraphSpec {
  const left = names('l', width);
  const right = names('r', width);
  return graph(
    [...left, ...right],
    left.map((l, i) => [l, right[i]!]),
  );
}

/** Every id of the listing's pages, following cursors, with the page sizes seen. */
async function listAll(
  h: Harness,
  limit: number,
): Promise<{ ids: string[]; pages: number[]; times: number[] }> {
  const ids: string[] = [];
  const times: number[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  do {
    const page = await h.repo.listRuns({ limit, cursor });
    pages.push(page.runs.length);
    for (const r of page.runs) {
      ids.push(r.id);
      times.push(Date.parse(r.createdAt));
    }
    cursor = page.nextCursor;
    assert.ok(pages.length <= 1 + 1000 / limit + 1, 'paging does not end');
  } while (cursor);
  return { ids, pages, times };
}

export function sizeSpec(test: ConformanceTest): void {
  describe('at size', () => {
    test('listRuns over 1,000 runs: pages of 100 and of 1,000 see every run once, newest first', async (h) => {
      const started = await eachBounded(names('run', 1000), () => h.start(graph(['only'])));
      const want = new Set(started.map((r) => r.id));
      assert.equal(want.size, 1000);

      for (const limit of [100, 1000]) {
        const { ids, pages, times } = await listAll(h, limit);
        assert.equal(ids.length, 1000, `limit ${limit}: every run listed`);
        assert.deepEqual(new Set(ids), want, `limit ${limit}: exactly the runs started, each once`);
        assert.deepEqual(pages.filter((n) => n > 0).length, 1000 / limit, `limit ${limit}: full pages`);
        assert.ok(
          times.every((t, i) => i === 0 || t <= times[i - 1]!),
          `limit ${limit}: createdAt never increases down the list`,
        );
      }
      // One page of 1,000 and ten of 100 agree on the order.
      assert.deepEqual((await listAll(h, 100)).ids, (await listAll(h, 1000)).ids);
      const first = await h.repo.listRuns({ limit: 1000 });
      for (const s of first.runs) {
        assert.equal(s.status, 'WAITING', `${s.id}: its one node is READY, so the run is not done`);
        assert.deepEqual(s.nodeCounts, { WAITING: 0, READY: 1, RUNNING: 0, COMPLETED: 0 });
      }
      assert.equal((await h.repo.stats()).runCount, 1000);
    });

    test('a 2,000-node start: every node stored, roots READY, the rest WAITING, one READY event each', async (h) => {
      const ready = h.subscribe();
      const run = await h.start(twoLayers(1000));
      assert.equal(run.nodes.length, 2000);
      assert.equal(run.edges.length, 1000);
      const stored = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(stored, 'READY'), names('l', 1000).sort());
      assert.deepEqual(namesIn(stored, 'WAITING'), names('r', 1000).sort());
      const [summary] = (await h.repo.listRuns({ limit: 1 })).runs;
      assert.deepEqual(summary?.nodeCounts, { WAITING: 1000, READY: 1000, RUNNING: 0, COMPLETED: 0 });
      assert.deepEqual((await h.repo.stats()).nodeCounts, {
        WAITING: 1000,
        READY: 1000,
        RUNNING: 0,
        COMPLETED: 0,
      });
      await ready.waitFor(
        'a NODE_READY for each of the 1,000 roots',
        (items) => eventNodes(items, run.id).length === 1000,
        { timeoutMs: 30_000 },
      );
    });

    test('a node with 300 dependents: its success makes all 300 READY with its output as input', async (h) => {
      const alice = await workingAgent(h, 'alice');
      const children = names('child', 300);
      const run = await h.start(
        graph(
          ['root', ...children],
          children.map((c) => ['root', c]),
        ),
      );
      const ready = h.subscribe();
      await alice.run(run.id, 'root', 'SUCCESS', 'from the root');
      const after = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(after, 'READY'), [...children].sort());
      await ready.waitFor(
        'a NODE_READY for each of the 300 dependents',
        (items) => eventNodes(items, run.id).filter((n) => n.startsWith('child')).length === 300,
        { timeoutMs: 30_000 },
      );
      const claims = await claimAll(alice, run.id, children);
      for (const c of claims) assert.equal(new TextDecoder().decode(c.node.inputs.root), 'from the root');
      await succeedAll(alice, claims);
      const done = await h.repo.inspect(run.id);
      assert.equal(done.status, 'COMPLETED');
      assert.equal(done.conclusion, 'SUCCESS');
    });

    test('a 300-way join: the sink waits for all 300 upstreams, then gets 300 inputs', async (h) => {
      const alice = await workingAgent(h, 'alice');
      const sources = names('src', 300);
      const run = await h.start(
        graph(
          [...sources, 'sink'],
          sources.map((s) => [s, 'sink']),
        ),
      );
      const claims = await claimAll(alice, run.id, sources);
      await succeedAll(alice, claims.slice(0, 299));
      assert.equal((await h.node(run.id, 'sink')).status, 'WAITING', 'one upstream still running');
      await succeedAll(alice, claims.slice(299));
      const sink = await alice.mustClaim(run.id, 'sink');
      assert.equal(Object.keys(sink.node.inputs).length, 300);
      for (const s of sources) assert.equal(new TextDecoder().decode(sink.node.inputs[s]), `out ${s}`);
      await alice.finish(sink, 'SUCCESS');
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test('a failure at the head of a 1,000-node chain leaves the other 999 unreached and the run FAIL', async (h) => {
      const alice = await workingAgent(h, 'alice');
      const chain = names('n', 1000);
      const run = await h.start(
        graph(
          chain,
          chain.slice(1).map((n, i) => [chain[i]!, n]),
        ),
      );
      await alice.run(run.id, 'n0', 'FAIL', 'broken');
      const after = await h.repo.inspect(run.id);
      assert.equal(after.status, 'COMPLETED');
      assert.equal(after.conclusion, 'FAIL');
      for (const n of after.nodes) {
        assert.equal(n.status, 'COMPLETED', `${n.spec.name} completed`);
        if (n.spec.name !== 'n0') assert.deepEqual(n.attempts, [], `${n.spec.name} never ran`);
      }
      const [summary] = (await h.repo.listRuns({ limit: 1 })).runs;
      assert.equal(summary?.conclusion, 'FAIL');
      assert.deepEqual(summary?.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 1000 });
    });

    test('a run of 200 nodes, each of its own runtime: started, every runtime woken, completed', async (h) => {
      const runtimes = names('rt', 200);
      // Subscribers of runtimes early and late in the run (etcd wakes a large run's runtimes in chunks).
      const watched = ['rt0', 'rt150', 'rt199'];
      const ready = h.subscribe(watched);
      const alice = await workingAgent(h, 'alice', { runtimes });
      const run = await h.start(graph(runtimes.map((rt) => node(`on-${rt}`, { runtime: rt }))));
      await ready.waitFor(
        'a NODE_READY for the node of each watched runtime',
        (items) => eventNodes(items, run.id).length === watched.length,
        { timeoutMs: 30_000 },
      );
      assert.deepEqual(eventNodes(ready.items, run.id), watched.map((rt) => `on-${rt}`).sort());
      await succeedAll(
        alice,
        await claimAll(
          alice,
          run.id,
          runtimes.map((rt) => `on-${rt}`),
        ),
      );
      assert.equal((await h.repo.inspect(run.id)).conclusion, 'SUCCESS');
    });

    test(
      'retention deletes a run of 200 runtimes',
      async (h) => {
        const runtimes = names('rt', 200);
        const alice = await workingAgent(h, 'alice', { runtimes });
        const run = await h.start(graph(runtimes.map((rt) => node(`on-${rt}`, { runtime: rt }))));
        await succeedAll(
          alice,
          await claimAll(
            alice,
            run.id,
            runtimes.map((rt) => `on-${rt}`),
          ),
        );
        assert.equal(await h.repo.deleteCompletedRunsBefore(Date.now() + 60_000), 1);
        assert.equal((await h.repo.stats()).runCount, 0);
      },
      { requires: 'retention' },
    );

    test('cancel of a 2,000-node run mid-flight: everything completes, running claims get CANCELLED', async (h) => {
      const alice = await workingAgent(h, 'alice');
      const run: Run = await h.start(twoLayers(1000));
      // 100 roots done (their dependents READY), 100 roots and 50 dependents running.
      await succeedAll(alice, await claimAll(alice, run.id, names('l', 100)));
      const running = await claimAll(alice, run.id, [...names('l', 200).slice(100), ...names('r', 50)]);

      const cancelled = await h.repo.cancel(run.id);
      assert.equal(cancelled.status, 'COMPLETED');
      assert.equal(cancelled.conclusion, 'CANCELLED');
      const stored = await h.repo.inspect(run.id);
      assert.equal(stored.conclusion, 'CANCELLED');
      const runningNames = new Set(running.map((c) => c.node.spec.name));
      const doneNames = new Set(names('l', 100));
      for (const n of stored.nodes) {
        const name = n.spec.name;
        assert.equal(n.status, 'COMPLETED', `${name} completed`);
        assert.equal(n.claim, undefined, `${name} holds no claim`);
        const want = doneNames.has(name) ? ['SUCCESS'] : runningNames.has(name) ? ['CANCELLED'] : [];
        assert.deepEqual(
          n.attempts.map((a) => a.conclusion),
          want,
          name,
        );
      }
      const refs = running.map((c) => ({ runId: c.runId, node: c.node.spec.name, claimId: c.claimId }));
      assert.ok(
        (await h.repo.claimsHeld(refs)).every((held) => !held),
        'no claim of the cancelled run is held',
      );
      await assert.rejects(alice.finish(running[0]!, 'SUCCESS'), ClaimConflictError);
      assert.equal(await alice.claim(run.id, 'l500'), undefined, 'nothing is claimable in a cancelled run');
    });

    test('retry of a cancelled 2,000-node run: every node that did not succeed goes back, then the run succeeds', async (h) => {
      const alice = await workingAgent(h, 'alice');
      const run: Run = await h.start(twoLayers(1000));
      await succeedAll(alice, await claimAll(alice, run.id, names('l', 100)));
      await claimAll(alice, run.id, [...names('l', 200).slice(100), ...names('r', 50)]);
      await h.repo.cancel(run.id);

      const events = h.subscribe();
      const resumed = await h.repo.retry(run.id);
      assert.equal(resumed.status, 'RUNNING');
      const ready = [...names('l', 1000).slice(100), ...names('r', 100)].sort();
      assert.deepEqual(namesIn(resumed, 'READY'), ready, 'roots left, and the dependents of succeeded roots');
      assert.deepEqual(namesIn(resumed, 'WAITING'), names('r', 1000).slice(100).sort());
      assert.deepEqual(namesIn(resumed, 'COMPLETED'), names('l', 100).sort(), 'the succeeded roots stay');
      await events.waitFor(
        'NODE_READY for every retried READY node',
        (items) => sawAll(items, run.id, ready),
        {
          timeoutMs: 60_000,
        },
      );

      await succeedAll(alice, await claimAll(alice, run.id, names('l', 1000).slice(100)));
      await succeedAll(alice, await claimAll(alice, run.id, names('r', 1000)));
      const final = await h.repo.inspect(run.id);
      assert.equal(final.status, 'COMPLETED');
      assert.equal(final.conclusion, 'SUCCESS');
      assert.deepEqual(
        final.nodes.find((n) => n.spec.name === 'r0')!.attempts.map((a) => a.conclusion),
        ['CANCELLED', 'SUCCESS'],
      );
    });

    test("release of 300 claims in one call (rule 20, past etcd's 128 operations and DynamoDB's 100 items): every node READY again, no attempt", async (h) => {
      const alice = await workingAgent(h, 'alice');
      const all = names('n', 300);
      const run: Run = await h.start(graph(all));
      const claims = await claimAll(alice, run.id, all);
      const answers = await h.repo.release(
        claims.map((c) => ({ runId: c.runId, node: c.node.spec.name, claimId: c.claimId })),
      );
      assert.deepEqual(
        answers,
        all.map(() => true),
      );
      const after = await h.repo.inspect(run.id);
      assert.deepEqual(namesIn(after, 'READY'), [...all].sort());
      assert.ok(after.nodes.every((n) => n.attempts.length === 0 && n.claim === undefined));
      const again = await claimAll(alice, run.id, all);
      assert.ok(
        again.every((c) => c.attempt === 1),
        'the attempt number is unchanged',
      );
    });
  });
}
