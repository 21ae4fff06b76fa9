import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  cancelledAttempt,
  checkRetryable,
  conclusionOf,
  countAttempt,
  failedForGood,
  failedNodesSummary,
  findCycle,
  finishOutcome,
  graphFromJson,
  graphFromJsonText,
  graphToJson,
  LIMITS,
  type NodeState,
  nextAttemptAt,
  openTally,
  planRerun,
  planRetry,
  retryDelayMs,
  runStatusOf,
  statusAfterFinish,
  type TriggerRule,
  tallied,
  topology,
  triggerDecision,
  ulidFloor,
  ulidSource,
  ulidTime,
  validateGraph,
} from '../src/model/index.js';
import { InvalidArgumentError, RunNotRetryableError } from '../src/protocol/errors.js';
import { DELAY_CASES } from './support/delay-cases.js';
import { FINISH_CASES } from './support/finish-cases.js';

describe('graph JSON', () => {
  it('parses the canonical proto3 JSON with snake_case or camelCase', () => {
    const spec = graphFromJsonText(
      '{"nodes":[{"name":"a","runtime":"debug","retry":{"fail":{"max_attempts":3}}},{"name":"b","runtime":"debug","retry":{"error":{"maxAttempts":2}}}],"edges":[{"source":"a","destination":"b"}]}',
    );
    assert.equal(spec.nodes[0]?.retry.fail?.maxAttempts, 3);
    assert.equal(spec.nodes[1]?.retry.error?.maxAttempts, 2);
    assert.deepEqual(spec.edges, [{ source: 'a', destination: 'b' }]);
  });
  it('names the problem in malformed JSON', () => {
    assert.throws(() => graphFromJsonText('{"nodes": ['), /not valid JSON/);
    assert.throws(() => graphFromJsonText('{"nodes": [{"nmae": "a"}]}'), /nmae/);
  });
});

describe('validation', () => {
  const node = (name: string, runtime = 'debug') => ({ name, runtime, metadata: {}, retry: {} });
  it('names the cycle', () => {
    const spec = {
      nodes: [node('a'), node('b'), node('c')],
      edges: [
        { source: 'a', destination: 'b' },
        { source: 'b', destination: 'c' },
        { source: 'c', destination: 'a' },
      ],
    };
    assert.deepEqual(findCycle(spec), ['a', 'b', 'c', 'a']);
    assert.match(validateGraph(spec).join(), /cycle: a -> b -> c -> a/);
  });
  it('names unknown endpoints, duplicates, empty names and runtimes, self-loops', () => {
    const problems = validateGraph({
      nodes: [node('a'), node('a'), node(''), node('x', '')],
      edges: [
        { source: 'a', destination: 'zz' },
        { source: 'a', destination: 'a' },
        { source: 'a', destination: 'x' },
        { source: 'a', destination: 'x' },
      ],
    }).join('\n');
    assert.match(problems, /duplicate node name "a"/);
    assert.match(problems, /node #3 has an empty name/);
    assert.match(problems, /node "x" has an empty runtime/);
    assert.match(problems, /unknown destination node "zz"/);
    assert.match(problems, /cannot depend on itself/);
    assert.match(problems, /duplicate edge a -> x/);
  });
  it('an input must name a direct upstream node', () => {
    const withInput = (from: string) => ({
      nodes: [node('a'), node('b'), { ...node('c'), metadata: { 'adagio.inputs.debug.text': [from] } }],
      edges: [
        { source: 'a', destination: 'b' },
        { source: 'b', destination: 'c' },
      ],
    });
    assert.deepEqual(validateGraph(withInput('b')), []);
    assert.match(
      validateGraph(withInput('a')).join(),
      /node "c": adagio.inputs.debug.text names "a", which is not a direct upstream node .*add the edge a -> c/,
    );
    assert.match(validateGraph(withInput('ghost')).join(), /names "ghost", which is not a direct upstream/);
  });
  it('every example workflow is valid', () => {
    const dir = join(import.meta.dirname, '..', 'examples', 'workflows');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 2);
    for (const f of files)
      assert.deepEqual(validateGraph(graphFromJsonText(readFileSync(join(dir, f), 'utf8'))), [], f);
  });
  it('finds no cycle in a deep chain without overflowing the stack', () => {
    const nodes = Array.from({ length: 50_000 }, (_, i) => node(`n${i}`));
    const edges = nodes.slice(1).map((n, i) => ({ source: `n${i}`, destination: n.name }));
    assert.equal(findCycle({ nodes, edges }), undefined);
  });
});

describe('finish rules', () => {
  it('decides retry or complete from counters of the same conclusion (rule 5)', () => {
    for (const c of FINISH_CASES)
      assert.equal(finishOutcome({ retry: c.retry }, c.conclusion, c.prior), c.outcome, JSON.stringify(c));
  });
  it('a retry goes back to READY; success and final failure complete', () => {
    assert.equal(statusAfterFinish('RETRY'), 'READY');
    assert.equal(statusAfterFinish('SUCCEEDED'), 'COMPLETED');
    assert.equal(statusAfterFinish('FAILED'), 'COMPLETED');
    assert.deepEqual(countAttempt({ fail: 1, error: 2 }, 'FAIL'), { fail: 2, error: 2 });
    assert.deepEqual(countAttempt({ fail: 1, error: 2 }, 'SUCCESS'), { fail: 1, error: 2 });
  });
  it('a dependent becomes READY when its last upstream succeeds, and unreached as soon as one fails (default trigger)', () => {
    const one = tallied(openTally(2), 'succeeded');
    assert.equal(triggerDecision(undefined, one), 'WAIT');
    assert.equal(triggerDecision(undefined, tallied(one, 'succeeded')), 'READY');
    assert.equal(triggerDecision(undefined, tallied(openTally(2), 'failed')), 'UNREACHED');
    assert.equal(triggerDecision(undefined, tallied(openTally(2), 'neither')), 'UNREACHED');
  });
  it('run status and conclusion (rule 7)', () => {
    assert.equal(runStatusOf({ total: 3, completed: 0, running: 0 }), 'WAITING');
    assert.equal(runStatusOf({ total: 3, completed: 0, running: 1 }), 'RUNNING');
    assert.equal(runStatusOf({ total: 3, completed: 1, running: 0 }), 'RUNNING');
    assert.equal(runStatusOf({ total: 3, completed: 3, running: 0 }), 'COMPLETED');
    assert.equal(conclusionOf({ cancelled: true, failed: true }), 'CANCELLED');
    assert.equal(conclusionOf({ cancelled: false, failed: true }), 'FAIL');
    assert.equal(conclusionOf({ cancelled: false, failed: false }), 'SUCCESS');
  });
  it('a cancelled RUNNING node gets a CANCELLED attempt for its claim', () => {
    const a = cancelledAttempt({ claimId: 'c1', agentId: 'ag' }, 1000, 2000);
    assert.equal(a.conclusion, 'CANCELLED');
    assert.equal(a.claimId, 'c1');
    assert.equal(a.agentId, 'ag');
    assert.equal(a.startedAt, '1970-01-01T00:00:01.000Z');
    assert.equal(cancelledAttempt({ claimId: 'c', agentId: 'a' }, 0, 2000).startedAt, '');
  });
  it('rule 19: a node failed for good after a last FAIL or ERROR; the list names a bounded, sorted few', () => {
    const at = (c: 'SUCCESS' | 'FAIL' | 'ERROR' | 'CANCELLED') =>
      [{ conclusion: c }] as NodeState['attempts'];
    assert.equal(failedForGood({ status: 'COMPLETED', attempts: at('FAIL') }), true);
    assert.equal(failedForGood({ status: 'COMPLETED', attempts: at('ERROR') }), true);
    assert.equal(failedForGood({ status: 'COMPLETED', attempts: at('CANCELLED') }), false);
    assert.equal(failedForGood({ status: 'COMPLETED', attempts: [] }), false, 'unreached');
    assert.equal(failedForGood({ status: 'READY', attempts: at('FAIL') }), false, 'to be retried');
    const names = ['g', 'b', 'a', 'f', 'e', 'd', 'c'];
    assert.deepEqual(failedNodesSummary(names, names.length), {
      failedNodes: ['a', 'b', 'c', 'd', 'e'].slice(0, LIMITS.maxListedFailedNodes),
      failedNodeCount: 7,
    });
    assert.deepEqual(failedNodesSummary(['x'], 9), { failedNodes: ['x'], failedNodeCount: 9 });
    assert.deepEqual(failedNodesSummary([], 0), { failedNodes: [], failedNodeCount: 0 });
  });
});

describe('ids', () => {
  it('makes time-sortable ULIDs whose time can be read back', () => {
    const ids = ulidSource();
    const a = ids.next(1000);
    const b = ids.next(1000);
    const c = ids.next(2000);
    assert.ok(a < b && b < c);
    assert.equal(ulidTime(c), 2000);
    assert.ok(ulidFloor(2000) <= c && ulidFloor(2001) > c);
  });
});

describe('retry delays (rule 5, backoff)', () => {
  for (const c of DELAY_CASES)
    it(`retry ${c.retry} of ${JSON.stringify(c.backoff)} waits ${c.want} ms`, () => {
      assert.equal(retryDelayMs(c.backoff, c.retry, 0.5), c.want);
    });

  it('jitter spreads the delay by up to ±jitter of itself', () => {
    const b = { initial: '10s', jitter: 0.2 };
    assert.equal(retryDelayMs(b, 1, 0), 8_000);
    assert.equal(retryDelayMs(b, 1, 0.5), 10_000);
    assert.equal(retryDelayMs(b, 1, 0.999_999), 11_999);
  });

  it('no backoff means at once; nextAttemptAt counts the retry of its own conclusion', () => {
    assert.equal(retryDelayMs(undefined, 3, 0.5), 0);
    const spec = { retry: { fail: { maxAttempts: 5, backoff: { initial: '1s', factor: 2 } } } };
    assert.equal(nextAttemptAt(spec, 'FAIL', { fail: 2, error: 0 }, 1_000, 0.5), 1_000 + 4_000);
    assert.equal(nextAttemptAt(spec, 'ERROR', { fail: 2, error: 0 }, 1_000, 0.5), 0);
  });

  it('validation names every bad duration, factor and jitter', () => {
    const problems = validateGraph({
      nodes: [
        {
          name: 'a',
          runtime: 'r',
          metadata: {},
          retry: { error: { maxAttempts: 2, backoff: { initial: '1x', factor: 0, jitter: -0.1, max: '' } } },
          timeout: '-5m',
        },
      ],
      edges: [],
      deadline: '0',
    });
    for (const p of [
      /node "a": retry\.error\.backoff\.initial "1x" is not a duration/,
      /retry\.error\.backoff\.factor must be 1 or more, got 0/,
      /retry\.error\.backoff\.jitter must be from 0 to 1, got -0\.1/,
      /retry\.error\.backoff\.max empty duration/,
      /node "a": timeout "-5m" is not a duration/,
      /graph deadline must be longer than 0/,
    ])
      assert.ok(
        problems.some((x) => p.test(x)),
        `no problem matches ${p}: ${JSON.stringify(problems)}`,
      );
  });

  it('the wire round-trips backoff, timeout and deadline', () => {
    const spec = graphFromJsonText(
      '{"nodes":[{"name":"a","runtime":"r","timeout":"30m","retry":{"fail":{"max_attempts":5,"backoff":{"initial":"1s","factor":2,"max":"1m","jitter":0.2}}}}],"edges":[],"deadline":"2h"}',
    );
    assert.deepEqual(spec.nodes[0]!.retry.fail, {
      maxAttempts: 5,
      backoff: { initial: '1s', factor: 2, max: '1m', jitter: 0.2 },
    });
    assert.equal(spec.nodes[0]!.timeout, '30m');
    assert.equal(spec.deadline, '2h');
    assert.deepEqual(graphFromJson(graphToJson(spec)), spec);
  });
});

describe('rule 15: planRetry', () => {
  /** A completed node: its last attempt (none: unreached), made since a retry put it back unless `before` says so. */
  const view = (
    name: string,
    last?: 'SUCCESS' | 'FAIL' | 'CANCELLED',
    trigger?: TriggerRule,
    before = 0,
  ) => ({
    name,
    status: 'COMPLETED' as const,
    last,
    attempts: last ? 1 : 0,
    attemptsBeforeRetry: before,
    trigger,
  });
  const spec = (names: string[], edges: [string, string][]) =>
    topology({
      nodes: names.map((name) => ({ name, runtime: 'r', metadata: {}, retry: {} })),
      edges: edges.map(([source, destination]) => ({ source, destination })),
    });

  it('puts back what did not succeed, judged in topological order from what stays', () => {
    // a ok -> b FAIL -> c unreached; d CANCELLED (a root); e all_done below b (ran, succeeded).
    const topo = spec(
      ['a', 'b', 'c', 'd', 'e'],
      [
        ['a', 'b'],
        ['b', 'c'],
        ['b', 'e'],
      ],
    );
    const plan = planRetry(
      'r1',
      [
        view('a', 'SUCCESS'),
        view('b', 'FAIL'),
        view('c'),
        view('d', 'CANCELLED'),
        view('e', 'SUCCESS', 'all_done'),
      ],
      topo,
    );
    assert.deepEqual(plan.nodes.map((n) => n.name).sort(), ['b', 'c', 'd']);
    assert.ok(
      plan.nodes.findIndex((n) => n.name === 'b') < plan.nodes.findIndex((n) => n.name === 'c'),
      'b before c',
    );
    const byName = Object.fromEntries(plan.nodes.map((n) => [n.name, n]));
    assert.equal(byName.b!.status, 'READY', 'its upstream a succeeded');
    assert.equal(byName.d!.status, 'READY', 'a root');
    assert.equal(byName.c!.status, 'WAITING', 'waits for b again');
    assert.equal(byName.e, undefined, 'the succeeded handler stays');
    assert.equal(byName.b!.attemptsBeforeRetry, 1);
    assert.deepEqual(byName.b!.counted, { a: 'succeeded' });
    assert.equal(plan.failed, false);
  });

  it('named nodes go back with their downstream; a failure left alone fails the run and unreaches its dependents', () => {
    // x FAIL stays; y ok (named) -> z (all_success, also below x) goes back and is unreached again at once.
    const topo = spec(
      ['x', 'y', 'z'],
      [
        ['x', 'z'],
        ['y', 'z'],
      ],
    );
    const plan = planRetry('r2', [view('x', 'FAIL'), view('y', 'SUCCESS'), view('z')], topo, ['y']);
    const byName = Object.fromEntries(plan.nodes.map((n) => [n.name, n]));
    assert.equal(byName.y!.status, 'READY');
    assert.equal(byName.z!.status, 'COMPLETED', 'x failed: all_success cannot hold');
    assert.equal(plan.failed, true);
    assert.throws(() => planRetry('r2', [view('x', 'FAIL')], spec(['x'], []), ['nope']), /"nope"/);
  });

  it('a node put back that then completed unreached counts by no attempt of before: it goes back, and fails nothing', () => {
    // a -> b -> c: a retry put a, b, c back; a failed again, so b and c completed unreached. b's last attempt is
    // still the old SUCCESS, c's the old FAIL: neither counts.
    const topo = spec(
      ['a', 'b', 'c'],
      [
        ['a', 'b'],
        ['b', 'c'],
      ],
    );
    const plan = planRetry(
      'r4',
      [view('a', 'FAIL'), view('b', 'SUCCESS', undefined, 1), view('c', 'FAIL', undefined, 1)],
      topo,
    );
    const byName = Object.fromEntries(plan.nodes.map((n) => [n.name, n]));
    assert.deepEqual(Object.keys(byName).sort(), ['a', 'b', 'c'], 'b did not succeed since it was put back');
    assert.equal(byName.c!.status, 'WAITING', 'c waits for b to run again, not READY on its old SUCCESS');

    // A named retry leaves such a node alone: a handler whose FAIL is from before its put-back fails nothing.
    const handlers = spec(['x', 'h', 'y'], [['x', 'h']]);
    const named = planRetry(
      'r5',
      [view('x', 'SUCCESS'), view('h', 'FAIL', 'one_failed', 1), view('y', 'FAIL')],
      handlers,
      ['y'],
    );
    assert.equal(named.failed, false, "h's old FAIL does not fail the run");
  });

  it('refuses a named retry that would leave a cancelled node, or one a cancel skipped, as it is', () => {
    // p and q ran side by side and were cancelled; retrying q alone would leave p cancelled for good.
    const pq = spec(['p', 'q'], []);
    assert.throws(
      () => planRetry('r6', [view('p', 'CANCELLED'), view('q', 'CANCELLED')], pq, ['q']),
      (e: Error) => e instanceof InvalidArgumentError && /"p" did not run to the end/.test(e.message),
    );
    // s was cancelled running, t (below it) skipped; u ran. Naming s covers t; naming t leaves s.
    const chain = spec(['s', 't', 'u'], [['s', 't']]);
    const views = [view('s', 'CANCELLED'), view('t'), view('u', 'SUCCESS')];
    assert.doesNotThrow(() => planRetry('r7', views, chain, ['s']));
    assert.throws(() => planRetry('r7', views, chain, ['t']), /"s"/);
    // A root a cancel completed before it ran (no attempt) is as undone; an unneeded handler is not.
    const skipped = spec(['r', 'k', 'h'], [['k', 'h']]);
    assert.throws(
      () =>
        planRetry('r8', [view('r'), view('k', 'FAIL'), view('h', undefined, 'one_success')], skipped, ['k']),
      /"r"/,
    );
    assert.doesNotThrow(() =>
      planRetry(
        'r8',
        [view('r', 'SUCCESS'), view('k', 'FAIL'), view('h', undefined, 'one_success')],
        skipped,
        ['r'],
      ),
    );
  });

  it('a rerun starts the graph with its deadline, as the time from creation to the deadline', () => {
    const run = (deadlineAt?: string) =>
      ({
        id: 'r9',
        createdAt: '2026-11-29T10:00:00.000Z',
        ...(deadlineAt ? { deadlineAt } : {}),
        nodes: [
          {
            spec: { name: 'a', runtime: 'r', metadata: {}, retry: {} },
            status: 'COMPLETED',
            attempts: [],
            inputs: {},
          },
        ],
        edges: [],
        status: 'COMPLETED',
      }) as unknown as Parameters<typeof planRerun>[0];
    assert.equal(planRerun(run('2026-11-29T12:00:00.000Z')).graph.deadline, '2h');
    assert.equal(
      planRerun(run('2026-11-29T10:01:00.250Z')).graph.deadline,
      '60250ms',
      'exact where the short form is not',
    );
    assert.equal(planRerun(run()).graph.deadline, undefined, 'none, or lifted by a retry');
  });

  it('refuses a run not completed, or succeeded', () => {
    assert.throws(() => checkRetryable('r3', { status: 'RUNNING' }), RunNotRetryableError);
    assert.throws(() => checkRetryable('r3', { status: 'COMPLETED', conclusion: 'SUCCESS' }), /succeeded/);
    checkRetryable('r3', { status: 'COMPLETED', conclusion: 'FAIL' });
    checkRetryable('r3', { status: 'COMPLETED', conclusion: 'CANCELLED' });
    checkRetryable('r3', { status: 'COMPLETED', conclusion: 'TIMED_OUT' });
  });
});

describe('rule 14: triggerDecision', () => {
  it('waits while the rule can still hold, decides once every upstream completed', () => {
    const t = (completed: number, succeeded: number, failed: number) => ({
      total: 3,
      completed,
      succeeded,
      failed,
    });
    assert.equal(triggerDecision(undefined, t(1, 0, 1)), 'UNREACHED', 'all_success: at once');
    assert.equal(triggerDecision('one_failed', t(1, 0, 1)), 'WAIT', 'judged when all completed');
    assert.equal(triggerDecision('one_failed', t(3, 2, 1)), 'READY');
    assert.equal(triggerDecision('one_failed', t(3, 3, 0)), 'UNREACHED');
    assert.equal(triggerDecision('all_done', t(3, 0, 0)), 'READY', 'all unreached upstream');
    assert.equal(triggerDecision('none_failed', t(1, 0, 1)), 'UNREACHED');
    assert.equal(triggerDecision('all_failed', t(2, 0, 2)), 'WAIT');
    assert.equal(triggerDecision('one_success', t(2, 0, 1)), 'WAIT');
  });
});
