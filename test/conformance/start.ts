/** Rule 1: start validates the graph and creates the run; rule 7's first state. */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ulidTime } from '../../src/model/ids.js';
import type { GraphSpec } from '../../src/model/types.js';
import { InvalidGraphError, NotFoundError } from '../../src/protocol/errors.js';
import { EXAMPLE_EDGES, EXAMPLE_NODES, exampleDag, graph, node } from './fixtures.js';
import type { ConformanceTest } from './harness.js';

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Asserts start rejects `spec` with an InvalidGraphError whose problems include one matching every pattern. */
export async function rejectsGraph(
  start: (spec: GraphSpec) => Promise<unknown>,
  spec: GraphSpec,
  ...patterns: RegExp[]
): Promise<void> {
  await assert.rejects(start(spec), (e: unknown) => {
    assert.ok(e instanceof InvalidGraphError, `expected InvalidGraphError, got ${String(e)}`);
    for (const p of patterns)
      assert.ok(
        e.problems.some((problem) => p.test(problem)),
        `no problem matches ${p}: ${JSON.stringify(e.problems)}`,
      );
    assert.match(e.message, patterns[0]!);
    return true;
  });
}

export function startSpec(test: ConformanceTest): void {
  describe('start (rule 1)', () => {
    test('rejects a cycle, naming its nodes', async (h) => {
      const spec = graph(
        ['a', 'b', 'c', 'd'],
        [
          ['a', 'b'],
          ['b', 'c'],
          ['c', 'd'],
          ['d', 'b'],
        ],
      );
      await rejectsGraph((s) => h.start(s), spec, /cycle/);
      const err = await h.start(spec).catch((e: InvalidGraphError) => e);
      const problem = (err as InvalidGraphError).problems.find((p) => /cycle/.test(p))!;
      for (const n of ['b', 'c', 'd']) assert.match(problem, new RegExp(`\\b${n}\\b`));
    });

    test('rejects a self-loop', async (h) => {
      await rejectsGraph((s) => h.start(s), graph(['a', 'b'], [['b', 'b']]), /\bb\b/);
    });

    test('rejects an edge with an unknown endpoint, naming it', async (h) => {
      await rejectsGraph((s) => h.start(s), graph(['a'], [['a', 'ghost']]), /ghost/);
      await rejectsGraph((s) => h.start(s), graph(['a'], [['phantom', 'a']]), /phantom/);
    });

    test('rejects duplicate node names and duplicate edges', async (h) => {
      await rejectsGraph((s) => h.start(s), graph(['a', 'b', 'a']), /duplicate.*\ba\b/i);
      await rejectsGraph(
        (s) => h.start(s),
        graph(
          ['a', 'b'],
          [
            ['a', 'b'],
            ['a', 'b'],
          ],
        ),
        /duplicate/i,
      );
    });

    test('rejects an empty name, an empty runtime and an empty graph', async (h) => {
      await rejectsGraph((s) => h.start(s), graph([node('')]), /empty name/i);
      await rejectsGraph((s) => h.start(s), graph([node('a', { runtime: '' })]), /\ba\b.*empty runtime/i);
      await rejectsGraph((s) => h.start(s), graph([]), /no nodes/i);
    });

    test('rejects text no store can keep: NUL and unpaired surrogates in names, runtimes and metadata', async (h) => {
      await rejectsGraph((s) => h.start(s), graph([node('a\u0000b')]), /name contains a NUL/);
      await rejectsGraph(
        (s) => h.start(s),
        graph([node('a', { runtime: 'r\uD800' })]),
        /runtime contains an unpaired/,
      );
      await rejectsGraph(
        (s) => h.start(s),
        graph([node('a', { metadata: { k: ['ok', 'bad\u0000'] } })]),
        /metadata "k" contains a NUL/,
      );
      await rejectsGraph(
        (s) => h.start(s),
        graph([node('a', { metadata: { '\uDC00': [] } })]),
        /metadata key/,
      );
      assert.equal((await h.repo.stats()).runCount, 0);
      // A well-formed pair (an emoji) is fine.
      const run = await h.start(graph([node('😀', { metadata: { k: ['😀'] } })]));
      assert.equal((await h.repo.inspect(run.id)).nodes[0]!.spec.metadata.k![0], '😀');
    });

    test('lists every problem of a graph at once, and stores nothing', async (h) => {
      const spec = graph([node('a'), node('a'), node('b', { runtime: '' })], [['a', 'nowhere']]);
      await rejectsGraph((s) => h.start(s), spec, /duplicate/i, /empty runtime/i, /nowhere/);
      assert.equal((await h.repo.stats()).runCount, 0);
      assert.deepEqual((await h.repo.listRuns()).runs, []);
    });

    test('creates the run: roots READY, the rest WAITING, run WAITING', async (h) => {
      const before = Date.now();
      const spec = exampleDag({
        a: { metadata: { 'adagio.arguments.x.y': ['1', '2'] }, retry: { fail: 3 } },
      });
      const run = await h.start(spec);

      assert.equal(run.status, 'WAITING');
      assert.equal(run.conclusion, undefined);
      assert.deepEqual(Object.fromEntries(run.nodes.map((n) => [n.spec.name, n.status])), {
        a: 'READY',
        b: 'READY',
        c: 'WAITING',
        d: 'WAITING',
        e: 'WAITING',
        f: 'WAITING',
        g: 'WAITING',
      });
      assert.deepEqual(run.nodes.map((n) => n.spec.name).sort(), EXAMPLE_NODES);
      for (const n of run.nodes) {
        assert.deepEqual(n.attempts, [], `${n.spec.name} has no attempts yet`);
        assert.equal(n.claim, undefined);
        assert.deepEqual(
          n.spec,
          spec.nodes.find((s) => s.name === n.spec.name),
        );
      }
      const edges = run.edges.map((e) => [e.source, e.destination]);
      assert.deepEqual(edges.sort(), [...EXAMPLE_EDGES].sort());

      // Id: a ULID, time-sortable; createdAt: RFC 3339, now.
      assert.match(run.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.match(run.createdAt, RFC3339);
      const created = Date.parse(run.createdAt);
      assert.ok(
        created >= before - 5_000 && created <= Date.now() + 5_000,
        `createdAt ${run.createdAt} is not now`,
      );
      assert.ok(Math.abs(ulidTime(run.id)! - created) < 5_000, 'the id encodes the creation time');

      // What start returned is what is stored.
      const stored = await h.repo.inspect(run.id);
      assert.equal(stored.id, run.id);
      assert.equal(stored.createdAt, run.createdAt);
      assert.equal(stored.status, 'WAITING');
      assert.deepEqual(
        stored.nodes.map((n) => [n.spec, n.status]),
        run.nodes.map((n) => [n.spec, n.status]),
      );
    });

    test('gives every run its own id, ordered by creation', async (h) => {
      const ids = [];
      for (let i = 0; i < 5; i++) ids.push((await h.start(graph(['only']))).id);
      assert.equal(new Set(ids).size, 5);
      assert.deepEqual([...ids].sort(), ids, 'ULIDs of later runs sort later');
    });

    test('inspect of an unknown run is NotFoundError', async (h) => {
      await assert.rejects(h.repo.inspect('01ARZ3NDEKTSV4RRFFQ69G5FAV'), NotFoundError);
      await assert.rejects(h.repo.inspect('not-an-id'), NotFoundError);
    });
  });
}
