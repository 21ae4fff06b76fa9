/**
 * Workflow definitions, params, run identity, run filters and idempotent
 * starts (docs/design.md rules 16 and 17).
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import type { WorkflowInput } from '../../src/model/workflows.js';
import type { ListRunsQuery } from '../../src/protocol/repository.js';
import { graph, node } from './fixtures.js';
import { type ConformanceTest, clockPast, type Harness } from './harness.js';

/** A two-node workflow whose first node's metadata uses both params. */
function nightly(extra: Partial<WorkflowInput> = {}): WorkflowInput {
  return {
    spec: graph(
      [
        node('extract', {
          metadata: { 'adagio.arguments.x.day': ['{{params.date}}'], env: ['on {{ params.env }}'] },
        }),
        'load',
      ],
      [['extract', 'load']],
    ),
    description: 'loads a day',
    params: [
      { name: 'date', required: true, description: 'the day to load' },
      { name: 'env', default: 'staging' },
    ],
    ...extra,
  };
}

/** Asserts the promise is refused with an error of this code whose message matches. */
async function refused(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error & { code?: string }) => {
    assert.equal(e.code, code, `code of: ${e.message}`);
    assert.match(e.message, message);
    return true;
  });
}

/** The ids of every run a query lists, following cursors (pages may be short while a cursor is set). */
async function listAll(h: Harness, query: ListRunsQuery): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    assert.ok(pages < 200, 'paging does not end');
    const page = await h.repo.listRuns({ ...query, cursor });
    assert.ok(page.runs.length <= (query.limit ?? 100), 'a page holds at most its limit');
    ids.push(...page.runs.map((r) => r.id));
    cursor = page.nextCursor;
    if (!cursor) return ids;
  }
}

export function workflowsSpec(test: ConformanceTest): void {
  describe('workflows, params and run identity (rules 16, 17)', () => {
    test('a put stores version 1; the same content again returns it; changed content makes version 2', async (h) => {
      const v1 = await h.repo.putWorkflow('nightly', nightly());
      assert.equal(v1.name, 'nightly');
      assert.equal(v1.version, 1);
      assert.equal(v1.description, 'loads a day');
      assert.deepEqual(v1.params, nightly().params);
      assert.ok(Date.parse(v1.createdAt) > 0);

      // Same content: metadata keys in another order, retry absent vs empty.
      const same = nightly();
      const md = same.spec.nodes[0]!.metadata;
      same.spec.nodes[0]!.metadata = {
        env: md.env!,
        'adagio.arguments.x.day': md['adagio.arguments.x.day']!,
      };
      const again = await h.repo.putWorkflow('nightly', same);
      assert.equal(again.version, 1);
      assert.equal(again.createdAt, v1.createdAt);

      const v2 = await h.repo.putWorkflow('nightly', nightly({ description: 'loads a day, better' }));
      assert.equal(v2.version, 2);
      assert.equal((await h.repo.getWorkflow('nightly')).version, 2, 'get returns the latest');
      const got1 = await h.repo.getWorkflow('nightly', 1);
      assert.equal(got1.description, 'loads a day');
      assert.deepEqual(got1.spec, v1.spec);
      assert.deepEqual(
        (await h.repo.listWorkflowVersions('nightly')).map((d) => d.version),
        [2, 1],
      );
      // Back to version 1's content: a new version (only the latest is compared).
      assert.equal((await h.repo.putWorkflow('nightly', nightly())).version, 3);

      await h.repo.putWorkflow('adhoc', { spec: graph(['a']) });
      const list = await h.repo.listWorkflows();
      assert.deepEqual(
        list.map((w) => [w.name, w.latestVersion]),
        [
          ['adhoc', 1],
          ['nightly', 3],
        ],
      );
      assert.equal(list[1]!.description, 'loads a day');
      assert.deepEqual(list[1]!.params, nightly().params);
    });

    test('get of an unknown workflow or version, and delete, answer not found', async (h) => {
      await refused(h.repo.getWorkflow('nope'), 'not_found', /workflow "nope" not found/);
      await h.repo.putWorkflow('w', { spec: graph(['a']) });
      await refused(h.repo.getWorkflow('w', 7), 'not_found', /w@7/);
      await refused(h.repo.getWorkflow('w', 0), 'invalid_argument', /version/);
      await h.repo.deleteWorkflow('w');
      await refused(h.repo.getWorkflow('w'), 'not_found', /"w"/);
      await refused(h.repo.deleteWorkflow('w'), 'not_found', /"w"/);
      assert.deepEqual(await h.repo.listWorkflows(), []);
      // A deleted name starts again at version 1.
      assert.equal((await h.repo.putWorkflow('w', { spec: graph(['b']) })).version, 1);
    });

    test('a put is refused naming each problem: undeclared param, duplicate, required with default, bad name, bad graph', async (h) => {
      await refused(
        h.repo.putWorkflow('nightly', nightly({ params: [{ name: 'date', required: true }] })),
        'invalid_argument',
        /\{\{params\.env\}\}.*no param "env"/,
      );
      await refused(
        h.repo.putWorkflow('w', { spec: graph(['a']), params: [{ name: 'p' }, { name: 'p' }] }),
        'invalid_argument',
        /param "p" is declared twice/,
      );
      await refused(
        h.repo.putWorkflow('w', {
          spec: graph(['a']),
          params: [{ name: 'p', required: true, default: 'x' }],
        }),
        'invalid_argument',
        /param "p" is required and has a default/,
      );
      await refused(
        h.repo.putWorkflow('bad name!', { spec: graph(['a']) }),
        'invalid_argument',
        /"bad name!"/,
      );
      await refused(
        h.repo.putWorkflow('w', {
          spec: graph(
            ['a', 'b'],
            [
              ['a', 'b'],
              ['b', 'a'],
            ],
          ),
        }),
        'invalid_argument',
        /cycle/,
      );
      assert.deepEqual(await h.repo.listWorkflows(), [], 'nothing was stored');
    });

    test('a start from a workflow substitutes its params, fills defaults and records them with its identity', async (h) => {
      await h.repo.putWorkflow('nightly', nightly());
      const run = await h.repo.start(undefined, {
        workflow: 'nightly',
        params: { date: '2026-01-02' },
        labels: { team: 'data', tier: 'gold' },
      });
      const extract = run.nodes.find((n) => n.spec.name === 'extract')!;
      assert.deepEqual(extract.spec.metadata, {
        'adagio.arguments.x.day': ['2026-01-02'],
        env: ['on staging'],
      });
      assert.equal(run.name, 'nightly', 'the name defaults to the workflow');
      assert.equal(run.workflow, 'nightly');
      assert.equal(run.workflowVersion, 1);
      assert.deepEqual(run.params, { date: '2026-01-02', env: 'staging' });
      assert.deepEqual(run.labels, { team: 'data', tier: 'gold' });
      const read = await h.repo.inspect(run.id);
      assert.equal(read.name, 'nightly');
      assert.deepEqual(read.params, run.params);
      assert.deepEqual(read.labels, run.labels);
      assert.equal(read.workflowVersion, 1);

      await h.repo.putWorkflow('nightly', nightly({ description: 'v2' }));
      const old = await h.repo.start(undefined, {
        workflow: 'nightly',
        version: 1,
        params: { date: 'd', env: 'prod' },
        name: 'backfill d',
      });
      assert.equal(old.workflowVersion, 1);
      assert.equal(old.name, 'backfill d');
      assert.deepEqual(old.params, { date: 'd', env: 'prod' });
      const latest = await h.repo.start(undefined, { workflow: 'nightly', params: { date: 'd' } });
      assert.equal(latest.workflowVersion, 2);

      const plain = await h.repo.start(graph(['a']), { name: 'by hand', labels: { k: 'v' } });
      assert.equal(plain.name, 'by hand');
      assert.equal(plain.workflow ?? '', '');
      assert.deepEqual(plain.labels, { k: 'v' });
    });

    test('a workflow past 256 KiB as stored, and params past 64 KiB together, are refused alike on every backend', async (h) => {
      // 300 nodes of 1 KiB of metadata each: fine as a graph, too big to store as one version.
      const big = graph(
        Array.from({ length: 300 }, (_, i) => node(`n${i}`, { metadata: { k: ['x'.repeat(1024)] } })),
        [],
      );
      await assert.rejects(h.repo.putWorkflow('big', { spec: big }), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'invalid_argument');
        assert.match(e.message, /the limit is 262144/);
        return true;
      });
      // Twelve params of 8 KiB: each within its limit, together past 64 KiB.
      const params = Array.from({ length: 12 }, (_, i) => ({ name: `p${i}` }));
      await h.repo.putWorkflow('many', { spec: graph(['a']), params });
      const values = Object.fromEntries(params.map((p) => [p.name, 'v'.repeat(8 * 1024)]));
      await assert.rejects(
        h.repo.start(undefined, { workflow: 'many', params: values }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, 'invalid_argument');
          assert.match(e.message, /params are \d+ bytes .*the limit is 65536 together/);
          return true;
        },
      );
      const fits = Object.fromEntries(params.slice(0, 6).map((p) => [p.name, 'v'.repeat(8 * 1024)]));
      const run = await h.repo.start(undefined, { workflow: 'many', params: fits });
      assert.equal(run.params?.p0?.length, 8 * 1024);
    });

    test("a start from a workflow keeps its graph's deadline (rule 13)", async (h) => {
      const spec = { ...nightly().spec, deadline: '2h' };
      await h.repo.putWorkflow('timed', { ...nightly(), spec });
      const run = await h.repo.start(undefined, { workflow: 'timed', params: { date: 'd' } });
      assert.ok(run.deadlineAt, 'the run has a deadline');
      assert.equal(Date.parse(run.deadlineAt) - Date.parse(run.createdAt), 2 * 3600_000);
      assert.equal((await h.repo.inspect(run.id)).deadlineAt, run.deadlineAt);
    });

    test('a start is refused naming the problem: unknown workflow, unknown or missing param, both or neither of spec and workflow', async (h) => {
      await h.repo.putWorkflow('nightly', nightly());
      await refused(h.repo.start(undefined, { workflow: 'nope' }), 'not_found', /workflow "nope"/);
      await refused(
        h.repo.start(undefined, { workflow: 'nightly', version: 9, params: { date: 'd' } }),
        'not_found',
        /nightly@9/,
      );
      await refused(
        h.repo.start(undefined, { workflow: 'nightly', params: { date: 'd', colour: 'red' } }),
        'invalid_argument',
        /unknown param "colour"/,
      );
      await refused(
        h.repo.start(undefined, { workflow: 'nightly', params: { env: 'prod' } }),
        'invalid_argument',
        /missing required param "date"/,
      );
      await refused(
        h.repo.start(graph(['a']), { workflow: 'nightly', params: { date: 'd' } }),
        'invalid_argument',
        /not both/,
      );
      await refused(h.repo.start(undefined, {}), 'invalid_argument', /graph spec or a workflow/);
      await refused(
        h.repo.start(graph(['a']), { params: { x: '1' } }),
        'invalid_argument',
        /params need a workflow/,
      );
      await refused(
        h.repo.start(graph(['a']), { labels: { 'bad key': 'v' } }),
        'invalid_argument',
        /label key "bad key"/,
      );
      assert.equal((await h.repo.stats()).runCount, 0, 'no run was made');
    });

    test('lists filter by workflow, labels, status, conclusion and search, across pages', async (h) => {
      await h.repo.putWorkflow('nightly', nightly());
      await h.repo.putWorkflow('hourly', { spec: graph(['only']) });
      const alice = await h.agent('alice');
      const made: { id: string; wf: string; team: string; done?: 'SUCCESS' | 'FAIL'; name: string }[] = [];
      for (let i = 0; i < 9; i++) {
        const wf = i % 3 === 0 ? 'hourly' : 'nightly';
        const team = i % 2 === 0 ? 'data' : 'web';
        if (made.length > 0)
          await clockPast(Date.parse((await h.repo.inspect(made.at(-1)!.id)).createdAt) + 1);
        const run = await h.repo.start(undefined, {
          workflow: wf,
          params: wf === 'nightly' ? { date: `d${i}` } : {},
          labels: { team, n: String(i) },
          name: `job-${i}${i === 4 ? '-special' : ''}`,
        });
        let done: 'SUCCESS' | 'FAIL' | undefined;
        if (wf === 'hourly') {
          done = i === 3 ? 'FAIL' : 'SUCCESS';
          await alice.run(run.id, 'only', done);
        }
        made.push({ id: run.id, wf, team, done, name: run.name! });
      }
      const newestFirst = (pred: (m: (typeof made)[number]) => boolean) =>
        made
          .filter(pred)
          .map((m) => m.id)
          .reverse();

      for (const limit of [1, 2, 100]) {
        assert.deepEqual(
          await listAll(h, { workflow: 'hourly', limit }),
          newestFirst((m) => m.wf === 'hourly'),
          `workflow filter, limit ${limit}`,
        );
        assert.deepEqual(
          await listAll(h, { labels: { team: 'data' }, workflow: 'nightly', limit }),
          newestFirst((m) => m.team === 'data' && m.wf === 'nightly'),
          `label and workflow, limit ${limit}`,
        );
      }
      assert.deepEqual(
        await listAll(h, { labels: { team: 'data', n: '4' } }),
        newestFirst((m) => m.name === 'job-4-special'),
      );
      assert.deepEqual(await listAll(h, { labels: { team: 'nobody' } }), []);
      assert.deepEqual(
        await listAll(h, { status: 'COMPLETED', limit: 1 }),
        newestFirst((m) => m.done !== undefined),
      );
      assert.deepEqual(
        await listAll(h, { status: 'WAITING' }),
        newestFirst((m) => m.done === undefined),
      );
      assert.deepEqual(
        await listAll(h, { conclusion: 'FAIL', limit: 2 }),
        newestFirst((m) => m.done === 'FAIL'),
      );
      assert.deepEqual(
        await listAll(h, { conclusion: 'SUCCESS' }),
        newestFirst((m) => m.done === 'SUCCESS'),
      );
      assert.deepEqual(await listAll(h, { search: 'SPECIAL' }), [made[4]!.id], 'name search ignores case');
      assert.deepEqual(await listAll(h, { search: made[6]!.id }), [made[6]!.id], 'by the whole id');
      const prefix = made[7]!.id.slice(0, made[7]!.id.length - 2).toLowerCase();
      assert.ok((await listAll(h, { search: prefix })).includes(made[7]!.id), 'by an id prefix');

      const listed = (await h.repo.listRuns({ workflow: 'nightly', limit: 1 })).runs[0]!;
      assert.equal(listed.name, made[8]!.name);
      assert.deepEqual(listed.labels, { team: 'data', n: '8' });
      assert.equal(listed.workflow, 'nightly');
      assert.equal(listed.workflowVersion, 1);

      await refused(
        h.repo.listRuns({ status: 'DONE' as never }),
        'invalid_argument',
        /status must be one of/,
      );
      await refused(
        h.repo.listRuns({ conclusion: 'OK' as never }),
        'invalid_argument',
        /conclusion must be one of/,
      );
    });

    test('20 concurrent starts with one request id make one run, and every start returns it', async (h) => {
      await h.repo.putWorkflow('nightly', nightly());
      const starts = await Promise.all(
        Array.from({ length: 20 }, () =>
          h.repo.start(undefined, { workflow: 'nightly', params: { date: 'd' }, requestId: 'req-1' }),
        ),
      );
      const ids = new Set(starts.map((r) => r.id));
      assert.equal(ids.size, 1, `one run, got ${[...ids].join(', ')}`);
      assert.equal(starts[0]!.requestId, 'req-1');
      assert.equal((await h.repo.stats()).runCount, 1);
      assert.deepEqual(await listAll(h, {}), [...ids]);

      const graphStarts = await Promise.all(
        Array.from({ length: 20 }, () => h.repo.start(graph(['a', 'b']), { requestId: 'req-2' })),
      );
      assert.equal(new Set(graphStarts.map((r) => r.id)).size, 1);
      assert.notEqual(graphStarts[0]!.id, starts[0]!.id, 'another request id, another run');
      assert.equal((await h.repo.stats()).runCount, 2);
      // Later, sequentially: still the same run.
      assert.equal((await h.repo.start(graph(['a', 'b']), { requestId: 'req-2' })).id, graphStarts[0]!.id);
    });

    test(
      'a request id is forgotten with its run: once retention deletes the run, the id starts a new one',
      async (h) => {
        const alice = await h.agent('alice');
        const first = await h.repo.start(graph(['x']), { requestId: 'once' });
        await alice.run(first.id, 'x', 'SUCCESS');
        assert.equal((await h.repo.start(graph(['x']), { requestId: 'once' })).id, first.id);
        await clockPast(Date.parse(first.createdAt) + 1);
        assert.equal(await h.repo.deleteCompletedRunsBefore(Date.now()), 1);
        const second = await h.repo.start(graph(['x']), { requestId: 'once' });
        assert.notEqual(second.id, first.id);
      },
      { requires: 'retention' },
    );
  });
}
