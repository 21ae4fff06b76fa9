/**
 * How `runs watch` renders a stream, driven by a scripted event sequence (the
 * real client's WatchEvent shape; the daemon-backed cases are in watch.test.ts):
 * output lines exactly once across repeated and split chunks, on a terminal and
 * in line mode, and catch-up lines in the order things happened.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CliIO } from '../../src/cli/io.js';
import { watchRun } from '../../src/cli/watch.js';
import type { NodeState, Run } from '../../src/model/types.js';
import type { WatchEvent } from '../../src/protocol/repository.js';

const T0 = Date.parse('2025-06-01T10:00:00Z');
const at = (ms: number) => new Date(T0 + ms).toISOString();
const bytes = (s: string) => new TextEncoder().encode(s);

function node(name: string, patch: Partial<NodeState>): NodeState {
  return {
    spec: { name, runtime: 'exec', metadata: {}, retry: {} },
    status: 'WAITING',
    attempts: [],
    startedAt: '',
    finishedAt: '',
    inputs: {},
    ...patch,
  };
}

function io(isTTY: boolean): CliIO & { out: () => string } {
  let text = '';
  return {
    stdout: { write: (s: string) => (text += s), isTTY, columns: 80 },
    stderr: { write: () => true },
    stdin: (async function* () {})(),
    env: {},
    now: () => T0 + 5000,
    out: () => text,
  };
}

function source(events: WatchEvent[], last: Run) {
  return {
    async *watch() {
      yield* events;
    },
    inspect: async () => last,
  };
}

const running = node('talk', {
  status: 'RUNNING',
  startedAt: at(100),
  liveOutput: bytes('before the watch\npart'),
});
const done = node('talk', {
  status: 'COMPLETED',
  startedAt: at(100),
  finishedAt: at(900),
  attempts: [
    {
      conclusion: 'SUCCESS',
      metadata: {},
      output: bytes(''),
      claimId: 'c',
      agentId: 'a',
      startedAt: at(100),
      finishedAt: at(900),
    },
  ],
});
const start: Run = { id: 'r1', createdAt: at(0), status: 'RUNNING', edges: [], nodes: [running] };
const end: Run = { ...start, status: 'COMPLETED', conclusion: 'SUCCESS', finishedAt: at(900), nodes: [done] };
const output = (offset: number, text: string): WatchEvent => ({
  type: 'output',
  runId: 'r1',
  node: 'talk',
  attempt: 1,
  offset,
  chunk: bytes(text),
});
const snapshotLen = 'before the watch\npart'.length;
// "é" split across two chunks; one chunk delivered twice; the last line without a newline.
const e = bytes('é');
const EVENTS: WatchEvent[] = [
  { type: 'snapshot', run: start },
  output(snapshotLen, 'ial line\nh'),
  {
    type: 'output',
    runId: 'r1',
    node: 'talk',
    attempt: 1,
    offset: snapshotLen + 10,
    chunk: e.subarray(0, 1),
  },
  { type: 'output', runId: 'r1', node: 'talk', attempt: 1, offset: snapshotLen + 11, chunk: e.subarray(1) },
  output(snapshotLen + 12, 'llo\n'),
  output(snapshotLen + 12, 'llo\n'),
  output(snapshotLen + 16, 'no newline'),
  { type: 'node', runId: 'r1', node: done, runStatus: 'COMPLETED', runConclusion: 'SUCCESS' },
];

describe('runs watch rendering', () => {
  it('line mode: each output line once, as NODE | line, the unfinished last one when the attempt ends', async () => {
    const out = io(false);
    assert.equal(await watchRun(source(EVENTS, end), 'r1', out), 0);
    const lines = out
      .out()
      .split('\n')
      .map((l) => l.replace(/^\d\d:\d\d:\d\d\.\d{3} {2}/, ''));
    assert.deepEqual(
      lines.filter((l) => l.includes('| ')),
      ['talk  | before the watch', 'talk  | partial line', 'talk  | héllo', 'talk  | no newline'],
    );
    assert.ok(lines.indexOf('talk  | no newline') < lines.findIndex((l) => l.includes('COMPLETED  SUCCESS')));
  });

  it('on a terminal: output lines above the progress line, nothing of them with --no-output', async () => {
    const tty = io(true);
    assert.equal(await watchRun(source(EVENTS, end), 'r1', tty), 0);
    assert.equal(tty.out().match(/talk \| héllo\n/g)?.length, 1);
    assert.ok(tty.out().includes('\r\x1b[2Ktalk | before the watch\n'), 'cleared, printed, redrawn');
    const quiet = io(false);
    await watchRun(source(EVENTS, end), 'r1', quiet, { noOutput: true });
    assert.doesNotMatch(quiet.out(), /\| /);
  });

  it('catch-up lines are stamped with when each transition happened, earliest first', async () => {
    const a = node('a', {
      status: 'COMPLETED',
      startedAt: at(0),
      finishedAt: at(2000),
      attempts: [{ ...done.attempts[0]!, startedAt: at(0), finishedAt: at(2000) }],
    });
    const b = node('b', { status: 'RUNNING', startedAt: at(1000) });
    const run: Run = { id: 'r2', createdAt: at(0), status: 'RUNNING', edges: [], nodes: [a, b] };
    const out = io(false);
    const finished: Run = {
      ...run,
      status: 'COMPLETED',
      conclusion: 'SUCCESS',
      nodes: [a, { ...b, status: 'COMPLETED', finishedAt: at(3000), attempts: a.attempts }],
    };
    await watchRun(source([{ type: 'snapshot', run }], finished), 'r2', out);
    const clock = (ms: number) => {
      const d = new Date(T0 + ms);
      const p = (n: number, w = 2) => String(n).padStart(w, '0');
      return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
    };
    const lines = out.out().split('\n');
    assert.equal(lines[1], `${clock(1000)}  b     RUNNING    attempt 1`);
    assert.equal(lines[2], `${clock(2000)}  a     COMPLETED  SUCCESS in 2s`);
  });
});
