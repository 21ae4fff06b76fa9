/**
 * The CLI's text views, on runs built by hand: tables, the pretty inspect
 * view, summaries, DOT (rendered by the real Graphviz), and the watch lines.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { dotString, runDot } from '../../src/cli/dot.js';
import { formatTimestamp, keyValues, nodeConclusion, table, topologicalOrder } from '../../src/cli/format.js';
import { runJson, statsJson } from '../../src/cli/json.js';
import { runTimeline } from '../../src/cli/timeline.js';
import { nodesSummary, runLine, runPretty, runsTable, statsText } from '../../src/cli/views.js';
import { describeTransition, finalLine, progressLine } from '../../src/cli/watch.js';
import type { Attempt, AttemptConclusion, NodeState, NodeStatus, Run } from '../../src/model/types.js';

const T0 = Date.parse('2025-06-01T10:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();
const bytes = (s: string) => new TextEncoder().encode(s);

function attempt(conclusion: AttemptConclusion, from: number, to: number, output = ''): Attempt {
  return {
    conclusion,
    metadata: {},
    output: bytes(output),
    claimId: 'c',
    agentId: 'agent-1',
    startedAt: at(from),
    finishedAt: at(to),
  };
}

function node(name: string, status: NodeStatus, attempts: Attempt[] = [], runtime = 'debug'): NodeState {
  const last = attempts[attempts.length - 1];
  return {
    spec: { name, runtime, metadata: {}, retry: {} },
    status,
    attempts,
    startedAt: last?.startedAt ?? '',
    finishedAt: status === 'COMPLETED' ? (last?.finishedAt ?? at(200)) : '',
    inputs: {},
  };
}

/** fetch → parse → (report, notify): parse failed twice, so report never ran. */
function failedRun(): Run {
  return {
    id: '01RUN',
    createdAt: at(0),
    status: 'COMPLETED',
    conclusion: 'FAIL',
    edges: [
      { source: 'parse', destination: 'report' },
      { source: 'fetch', destination: 'parse' },
      { source: 'parse', destination: 'notify "ops"' },
    ],
    // Spec order is not topological on purpose: views must sort.
    nodes: [
      node('report', 'COMPLETED'),
      node('parse', 'COMPLETED', [
        attempt('FAIL', 120, 150, 'bad header\nline 2'),
        attempt('FAIL', 160, 200, 'bad header again\nline 2'),
      ]),
      node('fetch', 'COMPLETED', [attempt('SUCCESS', 10, 110, 'ok')], 'exec'),
      node('notify "ops"', 'COMPLETED'),
    ],
  };
}

describe('cli text views', () => {
  it('table aligns columns, right-aligns numbers on request, trims trailing spaces', () => {
    const out = table(
      ['NAME', 'N', 'NOTE'],
      [
        ['a', '1', ''],
        ['longer', '100', 'x'],
      ],
      ['left', 'right', 'left'],
    );
    assert.equal(out, 'NAME      N  NOTE\na         1\nlonger  100  x\n');
    assert.equal(
      keyValues([
        ['Run', 'x'],
        ['Status', 'y'],
      ]),
      'Run     x\nStatus  y\n',
    );
  });

  it('timestamps are RFC 3339 UTC to the second; missing ones are a dash', () => {
    assert.equal(formatTimestamp('2025-06-01T10:00:00.123456Z'), '2025-06-01T10:00:00Z');
    assert.equal(formatTimestamp('2025-06-01T12:00:00+02:00'), '2025-06-01T10:00:00Z');
    assert.equal(formatTimestamp(''), '-');
  });

  it('orders nodes topologically and names unreached nodes', () => {
    const run = failedRun();
    assert.deepEqual(
      topologicalOrder(run.nodes, run.edges).map((n) => n.spec.name),
      ['fetch', 'parse', 'report', 'notify "ops"'],
    );
    assert.equal(nodeConclusion(run.nodes[0]!), 'UNREACHED');
    assert.equal(nodeConclusion(run.nodes[1]!), 'FAIL');
    assert.equal(nodeConclusion(node('x', 'RUNNING')), '');
  });

  it('summaries name the nodes that did not succeed', () => {
    const run = failedRun();
    assert.equal(nodesSummary(run), '1 succeeded, 1 failed (parse), 2 unreached (report, notify "ops")');
    assert.equal(
      runLine(run),
      'run 01RUN COMPLETED FAIL: 4 nodes, 1 succeeded, 1 failed (parse), 2 unreached (report, notify "ops")',
    );
    assert.equal(
      finalLine(run, T0 + 5000),
      'run 01RUN COMPLETED FAIL in 200ms: 4 nodes, 1 succeeded, 1 failed (parse), 2 unreached (report, notify "ops")',
    );
  });

  it('pretty inspect shows status, conclusion, attempts and timings per node, then failures', () => {
    const out = runPretty(failedRun(), T0 + 120_000);
    const lines = out.split('\n');
    assert.equal(lines[0], 'Run       01RUN');
    assert.equal(lines[1], 'Created   2025-06-01T10:00:00Z (2m ago)');
    assert.equal(lines[2], 'Status    COMPLETED FAIL');
    assert.match(out, /^Took {6}200ms$/m);
    const header = lines.find((l) => l.startsWith('NODE'))!;
    assert.deepEqual(header.split(/\s{2,}/), [
      'NODE',
      'RUNTIME',
      'STATUS',
      'CONCLUSION',
      'ATTEMPTS',
      'STARTED',
      'TOOK',
      'AFTER',
    ]);
    const row = (name: string) =>
      lines
        .find((l) => l.startsWith(`${name} `))!
        .split(/\s{2,}/)
        .map((s) => s.trim());
    assert.deepEqual(row('fetch'), ['fetch', 'exec', 'COMPLETED', 'SUCCESS', '1', '+10ms', '100ms', '-']);
    assert.deepEqual(row('parse'), [
      'parse',
      'debug',
      'COMPLETED',
      'FAIL',
      '2 (FAIL, FAIL)',
      '+160ms',
      '40ms',
      'fetch',
    ]);
    assert.deepEqual(row('report'), ['report', 'debug', 'COMPLETED', 'UNREACHED', '0', '-', '-', 'parse']);
    assert.match(
      out,
      /Not successful:\n {2}NODE +ATTEMPT +CONCLUSION +OUTPUT\n {2}parse +2 +FAIL +bad header again …\n/,
    );
  });

  it('pretty inspect labels an exec exit code, with a column only when a command ran', () => {
    const run: Run = {
      id: 'r',
      createdAt: at(0),
      status: 'COMPLETED',
      conclusion: 'FAIL',
      edges: [],
      nodes: [
        node(
          'build',
          'COMPLETED',
          [{ ...attempt('FAIL', 0, 10, 'make: *** error'), metadata: { 'adagio.exec.exit_code': ['2'] } }],
          'exec',
        ),
        node('check', 'COMPLETED', [attempt('FAIL', 0, 10, 'debug: fail')]),
      ],
    };
    const out = runPretty(run, T0 + 1000);
    assert.match(out, /Not successful:\n {2}NODE +ATTEMPT +CONCLUSION +EXIT CODE +OUTPUT\n/);
    assert.match(out, /^ {2}build +1 +FAIL +2 +make: \*\*\* error$/m);
    assert.match(out, /^ {2}check +1 +FAIL +- +debug: fail$/m);
    assert.doesNotMatch(out, /adagio\.exec\.exit_code/);
  });

  it('a running node shows how long it has been running', () => {
    const run: Run = {
      id: 'r',
      createdAt: at(0),
      status: 'RUNNING',
      edges: [],
      nodes: [{ ...node('slow', 'RUNNING'), startedAt: at(1000) }],
    };
    assert.match(runPretty(run, T0 + 4000), /^slow +debug +RUNNING +- +0 +\+1s +3s… +-$/m);
    assert.match(runPretty(run, T0 + 4000), /^Running for {2}4s$/m);
  });

  it('inspect shows the deadline, node timeouts, backoffs and when a delayed retry is due', () => {
    const retrying: NodeState = {
      ...node('fetch', 'READY', [attempt('FAIL', 0, 1000)]),
      spec: {
        name: 'fetch',
        runtime: 'debug',
        metadata: {},
        retry: { fail: { maxAttempts: 5, backoff: { initial: '1s', factor: 2, max: '1m', jitter: 0.2 } } },
        timeout: '30m',
      },
      nextAttemptAt: at(3000),
    };
    const run: Run = {
      id: 'r',
      createdAt: at(0),
      status: 'RUNNING',
      edges: [],
      nodes: [retrying, node('plain', 'WAITING')],
      deadlineAt: at(7_200_000),
    };
    const out = runPretty(run, T0 + 2000);
    assert.match(out, /^Deadline +2025-06-01T12:00:00Z \(in 1h59m58s\)$/m);
    assert.match(out, /Timing:\n {2}NODE +TIMEOUT +RETRY +NEXT ATTEMPT DUE\n/);
    assert.match(out, /^ {2}fetch +30m +fail ×5 after 1s ×2 ≤1m ±20% +2025-06-01T10:00:03Z \(in 1s\)$/m);
    assert.doesNotMatch(out, /^ {2}plain /m, 'a node without timing rules is not listed');
    const timedOut = runPretty({ ...run, status: 'COMPLETED', conclusion: 'TIMED_OUT' }, T0 + 2000);
    assert.match(timedOut, /^Status +COMPLETED TIMED_OUT$/m);
    assert.match(timedOut, /^Deadline .*\(passed: the run timed out\)$/m);
  });

  it('timeline draws each attempt, retries included, on one time axis', () => {
    const run = failedRun();
    const out = runTimeline(run, topologicalOrder(run.nodes, run.edges), T0 + 120_000);
    const lines = out.split('\n');
    assert.match(lines[0]!, /^NODE +# +TIMELINE +TOOK$/);
    assert.match(lines[1]!, /^fetch +1 +\| *S+ +\| +100ms$/);
    assert.match(lines[2]!, /^parse +1 +\| +F+ +\| +30ms$/);
    assert.match(lines[3]!, /^parse +2 +\| +F+\| +40ms$/);
    assert.equal(lines[1]!.indexOf('|'), lines[3]!.indexOf('|'), 'one axis');
    assert.match(out, /S success, F fail, E error, C cancelled, R running\n$/);
  });

  it('pretty inspect says why nodes wait or were not run', () => {
    const failed = runPretty(failedRun(), T0 + 120_000);
    assert.match(
      failed,
      /^Why:\n {2}NODE +WHY\n {2}report +not run: upstream parse did not succeed\n {2}notify "ops" +not run: upstream parse did not succeed$/m,
    );
    const running: Run = {
      id: '01RUN',
      createdAt: at(0),
      status: 'RUNNING',
      edges: [
        { source: 'fetch', destination: 'parse' },
        { source: 'other', destination: 'parse' },
      ],
      nodes: [
        node('fetch', 'COMPLETED', [attempt('SUCCESS', 10, 110)]),
        { ...node('other', 'READY'), spec: { ...node('other', 'READY').spec, runtime: 'python' } },
        node('parse', 'WAITING'),
      ],
    };
    const out = runPretty(running, T0 + 1000);
    assert.match(out, /^ {2}other +waiting for an agent with runtime "python"$/m);
    assert.match(out, /^ {2}parse +waiting for other to succeed$/m);
  });

  it('runs table shows id, name, creation, status, duration, finish time, node progress, failed nodes and labels', () => {
    const out = runsTable(
      [
        {
          id: '01A',
          createdAt: at(0),
          status: 'RUNNING',
          nodeCounts: { WAITING: 3, READY: 1, RUNNING: 2, COMPLETED: 10 },
          failedNodes: ['load', 'odd name'],
          failedNodeCount: 2,
        },
        {
          id: '01B',
          name: 'nightly',
          labels: { team: 'data', env: 'prod' },
          createdAt: at(1000),
          status: 'COMPLETED',
          conclusion: 'SUCCESS',
          finishedAt: at(66_000),
          nodeCounts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 7 },
          failedNodes: [],
          failedNodeCount: 0,
        },
        {
          id: '01C',
          createdAt: at(2000),
          status: 'COMPLETED',
          conclusion: 'FAIL',
          finishedAt: at(4000),
          nodeCounts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 9 },
          failedNodes: ['a', 'b', 'c', 'd', 'e'],
          failedNodeCount: 8,
        },
      ],
      T0 + 5000,
    );
    assert.equal(
      out,
      [
        'ID   NAME     CREATED               STATUS             TOOK  FINISHED              NODES             FAILED                   LABELS',
        '01A  -        2025-06-01T10:00:00Z  RUNNING             5s…  -                     10/16, 2 running  load, "odd name"         -',
        '01B  nightly  2025-06-01T10:00:01Z  COMPLETED SUCCESS  1m5s  2025-06-01T10:01:06Z  7/7               -                        env=prod,team=data',
        '01C  -        2025-06-01T10:00:02Z  COMPLETED FAIL       2s  2025-06-01T10:00:04Z  9/9               a, b, c, d, e (+3 more)  -',
        '',
      ].join('\n'),
    );
    assert.equal(
      statsText({ runCount: 2, nodeCounts: { WAITING: 3, READY: 1, RUNNING: 2, COMPLETED: 17 } }),
      'RUNS  NODES  WAITING  READY  RUNNING  COMPLETED\n   2     23        3      1        2         17\n',
    );
  });

  it('runs table on a narrow terminal fits its width: drops FINISHED, then LABELS, then CREATED, then shortens names', () => {
    const runs = [
      {
        id: '01M8GSA8NQ05BRWR5VXBZYSAWN',
        name: 'a nightly load with a long name',
        labels: { team: 'data', env: 'prod' },
        createdAt: at(1000),
        status: 'COMPLETED' as const,
        conclusion: 'SUCCESS' as const,
        finishedAt: at(66_000),
        nodeCounts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 7 },
        failedNodes: [],
        failedNodeCount: 0,
      },
    ];
    const full = runsTable(runs, T0 + 5000);
    assert.equal(runsTable(runs, T0 + 5000, 500), full, 'a wide terminal shows every column');
    for (const columns of [80, 100, 120, 60]) {
      const out = runsTable(runs, T0 + 5000, columns);
      for (const line of out.trimEnd().split('\n'))
        assert.ok(line.length <= columns || columns < 70, `${columns}: ${JSON.stringify(line)}`);
      assert.match(out, /^ID +NAME +/);
      assert.match(out, /01M8GSA8NQ05BRWR5VXBZYSAWN/);
      assert.match(out, /COMPLETED SUCCESS +1m5s +7\/7 +-/);
    }
    const at80 = runsTable(runs, T0 + 5000, 80);
    assert.doesNotMatch(at80, /FINISHED|LABELS|CREATED/);
    assert.match(at80, /a nightly l.*…/);
    assert.match(runsTable(runs, T0 + 5000, 140), /CREATED/);
  });

  it('JSON views are the API response messages in canonical proto3 JSON', () => {
    const json = JSON.parse(runJson(failedRun()));
    assert.equal(json.run.id, '01RUN');
    assert.equal(json.run.createdAt, at(0));
    assert.equal(json.run.status, 'COMPLETED');
    assert.equal(json.run.conclusion, 'FAIL');
    assert.equal(json.run.nodes[1].attempts[0].conclusion, 'FAIL');
    assert.equal(json.run.nodes[1].attempts[0].output, Buffer.from('bad header\nline 2').toString('base64'));
    assert.deepEqual(json.run.nodeCounts, { completed: '4' });
    assert.deepEqual(
      JSON.parse(statsJson({ runCount: 1, nodeCounts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 2 } })),
      {
        stats: { runCount: '1', completedNodes: '2' },
      },
    );
  });

  it('DOT strings escape quotes, backslashes and line breaks', () => {
    assert.equal(dotString('plain'), '"plain"');
    assert.equal(dotString('say "hi"'), '"say \\"hi\\""');
    assert.equal(dotString('back\\slash'), '"back\\\\slash"');
    assert.equal(dotString('trailing\\'), '"trailing\\\\"');
    assert.equal(dotString('two\nlines'), '"two\\nlines"');
  });

  it('DOT output renders in Graphviz, with hostile names and colours by outcome', () => {
    const run = failedRun();
    run.nodes.push(node('back\\slash "and" quotes\\', 'COMPLETED', [attempt('ERROR', 0, 1)]));
    run.nodes.push(node('new\nline; -> {x}', 'RUNNING'));
    run.edges.push({ source: 'fetch', destination: 'back\\slash "and" quotes\\' });
    run.edges.push({ source: 'back\\slash "and" quotes\\', destination: 'new\nline; -> {x}' });
    const dot = runDot(run);
    assert.match(dot, /^ {2}"parse" \[label="parse\\ndebug · FAIL ×2", fillcolor="#f4a6a6"/m);
    assert.match(dot, /^ {2}"report" \[.*style="rounded,filled,dashed"/m);
    assert.match(dot, /^ {2}"fetch" -> "parse";$/m);
    // Graphviz itself is the judge: plain output lists every node and edge it understood.
    const rendered = spawnSync('dot', ['-Tplain'], { input: dot, encoding: 'utf8' });
    assert.equal(rendered.error, undefined, 'Graphviz `dot` must be installed (Debian package graphviz)');
    assert.equal(rendered.status, 0, rendered.stderr);
    assert.equal(rendered.stderr, '');
    const lines = rendered.stdout.split('\n');
    assert.equal(lines.filter((l) => l.startsWith('node ')).length, 6);
    assert.equal(lines.filter((l) => l.startsWith('edge ')).length, 5);
    const svg = spawnSync('dot', ['-Tsvg'], { input: dot, encoding: 'utf8' });
    assert.equal(svg.status, 0, svg.stderr);
    assert.match(svg.stdout, /back\\slash &quot;and&quot; quotes\\/);
  });

  it('watch lines describe each change once', () => {
    const ready = node('a', 'READY');
    const running = { ...node('a', 'RUNNING'), startedAt: at(0) };
    const failed = node('a', 'READY', [attempt('FAIL', 0, 10)]);
    const done = node('a', 'COMPLETED', [attempt('FAIL', 0, 10), attempt('SUCCESS', 20, 45)]);
    assert.equal(describeTransition(undefined, ready), 'READY');
    assert.equal(describeTransition(ready, running), 'RUNNING    attempt 1');
    assert.equal(describeTransition(running, failed), 'READY      retrying after FAIL (attempt 1)');
    assert.equal(describeTransition(failed, done), 'COMPLETED  SUCCESS in 25ms, 2 attempts');
    assert.equal(describeTransition(done, done), undefined, 'a repeated event prints nothing');
    assert.equal(describeTransition(undefined, node('b', 'COMPLETED')), 'COMPLETED  UNREACHED');
    // An exec attempt that failed says its exit code, as a label.
    const exit2 = { ...attempt('FAIL', 0, 10), metadata: { 'adagio.exec.exit_code': ['2'] } };
    assert.equal(
      describeTransition(running, node('a', 'READY', [exit2])),
      'READY      retrying after FAIL (attempt 1, exit code 2)',
    );
    assert.equal(
      describeTransition(running, node('a', 'COMPLETED', [exit2])),
      'COMPLETED  FAIL in 10ms, exit code 2',
    );
  });

  it('the live progress line fits the terminal', () => {
    const run = failedRun();
    run.status = 'RUNNING';
    run.conclusion = undefined;
    run.nodes[0] = { ...node('report', 'RUNNING'), startedAt: at(300) };
    const line = progressLine(run, T0 + 1500, '⠋', 200);
    assert.equal(line, '⠋ run 01RUN RUNNING [███████████████░░░░░] 3/4 ✓1 ✗2 ▶1 ·0  1.5s  running: report');
    assert.equal([...progressLine(run, T0 + 1500, '⠋', 40)].length, 39);
    // A real run id in an 80-column terminal: counts, time and running nodes stay, the bar makes room.
    run.id = '01M8GPSGMKPJFE252BXAXYHNEP';
    assert.equal(
      progressLine(run, T0 + 1500, '⠋', 80),
      '⠋ run 01M8GPSGMKPJFE252BXAXYHNEP RUNNING 3/4 ✓1 ✗2 ▶1 ·0  1.5s  running: report',
    );
    assert.match(progressLine(run, T0 + 1500, '⠋', 100), /RUNNING \[█+░+\] 3\/4 .* running: report$/);
    const at60 = progressLine(run, T0 + 1500, '⠋', 60);
    assert.equal([...at60].length, 59);
    assert.match(at60, /RUNNING 3\/4 ✓1 ✗2 ▶1 ·0 +…$/);
  });
});
