/**
 * `adagio` end to end: a real adagiod (memory backend, in-process exec and
 * debug agents) on a free port, driven through the CLI binary as a
 * subprocess. Covers starting (file, stdin), watching, inspecting (pretty,
 * JSON, dot), listing, cancelling, agents and stats. Variations of a case
 * already driven through the binary run the same program in process, to
 * keep the suite's CPU bounded.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { AdagioClient } from '../../src/client/index.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { ADAGIO, cli, cliInProcess, eventually, SEVEN_NODE } from './helpers.js';

const RUN_ID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const NODES = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];

describe('adagio CLI against a real adagiod', () => {
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let client: AdagioClient;
  const started: string[] = [];
  let fromFile = '';
  let fromStdin = '';

  before(async () => {
    // A short grace period: the cancelled run's sleeping node may still be running when the suite ends.
    daemon = await startDaemon(['--grace-period', '1s']);
    env = { ADAGIO_ADDRESS: daemon.address };
    client = new AdagioClient({ address: daemon.address });
  });
  after(async () => {
    await daemon?.stop();
  });

  const getJson = async (path: string): Promise<unknown> => {
    const res = await fetch(`${daemon.address}${path}`);
    assert.equal(res.status, 200, path);
    return res.json();
  };

  it('starts the 7-node example from a file and watches it to success (exit 0)', async () => {
    const r = await cli(['runs', 'start', SEVEN_NODE, '--watch'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const lines = r.stdout.trim().split('\n');
    const m = /^started run (\S+) (WAITING|RUNNING): 7 nodes, /.exec(lines[0]!);
    assert.ok(m, lines[0]);
    fromFile = m[1]!;
    assert.match(fromFile, RUN_ID);
    started.push(fromFile);
    assert.match(lines[1]!, new RegExp(`^watching run ${fromFile} `));
    assert.match(
      lines.at(-1)!,
      new RegExp(`^run ${fromFile} COMPLETED SUCCESS in \\S+: 7 nodes, 7 succeeded$`),
    );
    // One line per transition (stdout is a pipe): every node is seen completing, whether it
    // was already done when the watch joined or finished while it was watched.
    for (const name of NODES)
      assert.match(
        r.stdout,
        new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  ${name} +COMPLETED  SUCCESS`, 'm'),
        name,
      );
  });

  it('starts from stdin (no FILE, and -) with -q printing only the id; watch exits 0', async () => {
    const graph = await readFile(SEVEN_NODE, 'utf8');
    const [implicit, dash] = await Promise.all([
      cli(['runs', 'start', '-q'], { env, input: graph }),
      cli(['runs', 'start', '-', '--quiet'], { env, input: graph }),
    ]);
    for (const r of [implicit, dash]) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^[0-9A-Z]{26}\n$/);
      started.push(r.stdout.trim());
    }
    fromStdin = implicit.stdout.trim();
    const w = await cli(['runs', 'watch', fromStdin], { env });
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout.trim().split('\n').at(-1)!, /COMPLETED SUCCESS in \S+: 7 nodes, 7 succeeded$/);
    const quiet = await cliInProcess(['runs', 'watch', dash.stdout.trim(), '-q'], { env });
    assert.deepEqual([quiet.code, quiet.stdout, quiet.stderr], [0, '', '']);
  });

  it('inspect -o pretty shows every node with status, conclusion, attempts and timings', async () => {
    const r = await cli(['runs', 'inspect', fromFile], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Run +${fromFile}$`, 'm'));
    assert.match(r.stdout, /^Status +COMPLETED SUCCESS$/m);
    assert.match(r.stdout, /^Nodes +7: 7 succeeded$/m);
    for (const name of NODES) {
      const runtime = ['b', 'd', 'f'].includes(name) ? 'debug' : 'exec';
      assert.match(
        r.stdout,
        new RegExp(`^${name} +${runtime} +COMPLETED +SUCCESS +1 +\\+\\d\\S* +\\d\\S* +\\S`, 'm'),
        name,
      );
    }
    assert.match(r.stdout, /^g +exec +COMPLETED +SUCCESS +1 +\S+ +\S+ +e, f$/m);
    assert.doesNotMatch(r.stdout, /Not successful/);
  });

  it('inspect -o json is exactly what GET /v0/runs/{id} returns', async () => {
    const r = await cliInProcess(['runs', 'inspect', fromFile, '-o', 'json'], { env });
    assert.equal(r.code, 0, r.stderr);
    const json = JSON.parse(r.stdout);
    assert.equal(json.run.conclusion, 'SUCCESS');
    const g = json.run.nodes.find((n: { spec: { name: string } }) => n.spec.name === 'g');
    assert.equal(Buffer.from(g.attempts[0].output, 'base64').toString(), 'ALPHA\n');
    assert.deepEqual(json, await getJson(`/v0/runs/${fromFile}`));
  });

  it('inspect -o dot renders in Graphviz', async () => {
    const r = await cli(['runs', 'inspect', fromFile, '--output', 'dot'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^digraph "run [0-9A-Z]{26}" \{/);
    const plain = spawnSync('dot', ['-Tplain'], { input: r.stdout, encoding: 'utf8' });
    assert.equal(plain.error, undefined, 'Graphviz `dot` must be installed (Debian package graphviz)');
    assert.equal(plain.status, 0, plain.stderr);
    const out = plain.stdout.split('\n');
    assert.deepEqual(
      out
        .filter((l) => l.startsWith('node '))
        .map((l) => l.split(' ')[1])
        .sort(),
      NODES,
    );
    assert.equal(out.filter((l) => l.startsWith('edge ')).length, 8);
  });

  it('runs ls lists the runs newest first; --json matches GET /v0/runs; --limit pages', async () => {
    const r = await cli(['runs', 'ls'], { env });
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trim().split('\n');
    assert.match(header!, /^ID +NAME +CREATED +STATUS +TOOK +FINISHED +NODES +FAILED +LABELS$/);
    assert.deepEqual(
      rows.map((l) => l.split(/\s+/)[0]).sort(),
      [...started].sort(),
      'every started run is listed',
    );
    for (const row of rows)
      assert.match(
        row,
        /^\S{26} +- +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +COMPLETED SUCCESS +\S+ +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +7\/7 +- +-$/,
      );

    const json = await cliInProcess(['runs', 'ls', '--json'], { env });
    assert.deepEqual(JSON.parse(json.stdout), await getJson('/v0/runs'));

    const one = await cliInProcess(['runs', 'ls', '--limit', '1'], { env });
    assert.equal(one.code, 0, one.stderr);
    assert.equal(one.stdout.trim().split('\n').length, 2, 'a header and one run');
    const cursor = /--cursor (\S+)/.exec(one.stderr)?.[1];
    assert.ok(cursor, one.stderr);
    const next = await cliInProcess(['runs', 'ls', '--limit', '1', '--cursor', cursor], { env });
    assert.equal(next.code, 0, next.stderr);
    assert.notEqual(next.stdout.split('\n')[1], one.stdout.split('\n')[1], 'the next page holds another run');
    const all = await cliInProcess(['runs', 'ls', '--limit', '1', '--all', '--json'], { env });
    assert.equal(JSON.parse(all.stdout).runs.length, started.length);
  });

  it('runs ls --since and --until take durations and RFC 3339 times', async () => {
    const recent = await cliInProcess(['runs', 'ls', '--since', '1h', '--json'], { env });
    assert.equal(recent.code, 0, recent.stderr);
    assert.equal(JSON.parse(recent.stdout).runs.length, started.length);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = await cliInProcess(['runs', 'ls', '--since', future], { env });
    assert.deepEqual([none.code, none.stdout, none.stderr], [0, '', 'adagio: no runs match\n']);
    const old = await cliInProcess(['runs', 'ls', '--until', '2h30m', '--json'], { env });
    assert.deepEqual(JSON.parse(old.stdout).runs ?? [], []);
    const bad = await cli(['runs', 'ls', '--since', 'yesterday'], { env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^adagio: --since: "yesterday" is neither a duration .* nor an RFC 3339 time/);
  });

  it('a failing run: watch exits 1 and inspect names the failure', async () => {
    const graph = JSON.stringify({
      nodes: [
        { name: 'ok', runtime: 'debug' },
        {
          name: 'bad',
          runtime: 'debug',
          metadata: { 'adagio.arguments.debug.conclusion': { values: ['fail'] } },
          retry: { fail: { max_attempts: 2 } },
        },
        { name: 'after', runtime: 'debug' },
      ],
      edges: [
        { source: 'ok', destination: 'bad' },
        { source: 'bad', destination: 'after' },
      ],
    });
    const r = await cli(['runs', 'start', '--watch'], { env, input: graph });
    assert.equal(r.code, 1, r.stderr);
    const id = /^started run (\S+)/.exec(r.stdout)![1]!;
    started.push(id);
    assert.match(
      r.stdout.trim().split('\n').at(-1)!,
      /COMPLETED FAIL in \S+: 3 nodes, 1 succeeded, 1 failed \(bad\), 1 unreached \(after\)$/,
    );
    const again = await cliInProcess(['runs', 'watch', id], { env });
    assert.equal(again.code, 1, 'watching a finished failed run also exits 1');
    const pretty = await cliInProcess(['runs', 'inspect', id], { env });
    assert.match(pretty.stdout, /^bad +debug +COMPLETED +FAIL +2 \(FAIL, FAIL\) /m);
    assert.match(pretty.stdout, /^after +debug +COMPLETED +UNREACHED +0 +- +- +bad$/m);
    assert.match(pretty.stdout, /Not successful:\n +NODE .*\n +bad +2 +FAIL +debug: fail\n/);
    // The runs list names the failed node (not the unreached one).
    const ls = await cliInProcess(['runs', 'ls', '--limit', '1'], { env });
    assert.match(ls.stdout.split('\n')[1]!, new RegExp(`^${id} .* COMPLETED FAIL .* 3/3 +bad +-$`));
  });

  it('cancels a long-running run; its watcher exits 1', async () => {
    const graph = JSON.stringify({
      nodes: [
        {
          name: 'sleepy',
          runtime: 'debug',
          metadata: { 'adagio.arguments.debug.sleep': { values: ['10m'] } },
        },
        { name: 'next', runtime: 'debug' },
      ],
      edges: [{ source: 'sleepy', destination: 'next' }],
    });
    const s = await cliInProcess(['runs', 'start', '-q'], { env, input: graph });
    const id = s.stdout.trim();
    started.push(id);
    await eventually(async () =>
      (await client.inspect(id)).nodes[0]!.status === 'RUNNING' ? true : undefined,
    );
    // Whether the watcher joins before or after the cancel, it must end with the cancelled run and exit 1.
    const watching = cli(['runs', 'watch', id], { env });
    const c = await cli(['runs', 'cancel', id], { env });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(
      c.stdout,
      `cancelled run ${id} COMPLETED CANCELLED: 2 nodes, 1 cancelled (sleepy), 1 unreached (next)\n`,
    );
    const w = await watching;
    assert.equal(w.code, 1, w.stderr);
    assert.match(
      w.stdout.trim().split('\n').at(-1)!,
      new RegExp(
        `^run ${id} COMPLETED CANCELLED in \\S+: 2 nodes, 1 cancelled \\(sleepy\\), 1 unreached \\(next\\)$`,
      ),
    );
    const again = await cliInProcess(['runs', 'cancel', id, '--json'], { env });
    assert.equal(again.code, 0, 'cancel is idempotent');
    assert.equal(JSON.parse(again.stdout).run.conclusion, 'CANCELLED');
    const twice = await cliInProcess(['runs', 'cancel', id], { env });
    assert.deepEqual(
      [twice.code, twice.stdout, twice.stderr],
      [
        0,
        `already cancelled: run ${id} COMPLETED CANCELLED: 2 nodes, 1 cancelled (sleepy), 1 unreached (next)\n`,
        '',
      ],
    );
    // A run that completed on its own: nothing was cancelled, and the exit code says so.
    const succeeded = started[0]!;
    const late = await cliInProcess(['runs', 'cancel', succeeded], { env });
    assert.equal(late.code, 1);
    assert.equal(late.stdout, '');
    assert.match(
      late.stderr,
      new RegExp(
        `^adagio: nothing to cancel: run ${succeeded} COMPLETED SUCCESS: .*\\(it had already completed\\)\n$`,
      ),
    );
  });

  it('runs logs -f follows a running node live and ends when it completes; logs prints any attempt', async () => {
    const graph = JSON.stringify({
      nodes: [
        {
          name: 'talk',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': { values: ['sh'] },
            'adagio.arguments.exec.args': {
              values: ['-c', 'echo one; sleep 4; echo two; sleep 2; echo three'],
            },
          },
        },
      ],
      edges: [],
    });
    const id = (await cliInProcess(['runs', 'start', '-q'], { env, input: graph })).stdout.trim();
    started.push(id);
    // The binary, so its output can be read as it comes.
    const child = spawn(process.execPath, [ADAGIO, 'runs', 'logs', '-f', id, 'talk'], {
      env: { ...process.env, ...env },
    });
    let out = '';
    let stderr = '';
    let seenWhileRunning = false;
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      out += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    await eventually(async () => {
      if (!out.includes('one\n')) return undefined;
      seenWhileRunning = (await client.inspect(id)).nodes[0]!.status === 'RUNNING';
      return true;
    });
    assert.equal(await exited, 0, stderr);
    assert.ok(seenWhileRunning, 'the first line was printed while the node still ran');
    assert.equal(out, 'one\ntwo\nthree\n');

    const again = await cliInProcess(['runs', 'logs', id, 'talk', '--attempt', '1'], { env });
    assert.equal(again.stdout, 'one\ntwo\nthree\n');
    const none = await cliInProcess(['runs', 'logs', id, 'talk', '--attempt', '2'], { env });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /node "talk" has 1 attempt/);
    const unknown = await cliInProcess(['runs', 'logs', id, 'nope'], { env });
    assert.match(unknown.stderr, new RegExp(`run ${id} has no node "nope"`));
  });

  it('runs logs (and -f) fetch an attempt output the read budget left out of the run', async () => {
    // Six outputs of 1 MB pass the 4 MiB a read of the run carries: some are left out of inspect and watch.
    const bytes = 1_000_000;
    const names = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5'];
    const graph = JSON.stringify({
      nodes: names.map((name) => ({
        name,
        runtime: 'exec',
        metadata: {
          'adagio.arguments.exec.command': { values: ['sh'] },
          'adagio.arguments.exec.args': { values: ['-c', `yes ${name} | head -c ${bytes}`] },
        },
      })),
      edges: [],
    });
    const id = (await cliInProcess(['runs', 'start', '-q'], { env, input: graph })).stdout.trim();
    started.push(id);
    const run = await eventually(async () => {
      const r = await client.inspect(id);
      return r.status === 'COMPLETED' ? r : undefined;
    });
    assert.equal(run.conclusion, 'SUCCESS');
    const omitted = run.nodes.find((n) => n.attempts[0]?.omittedOutputBytes !== undefined);
    assert.ok(omitted, 'a node whose output the read left out');
    const name = omitted.spec.name;
    const expected = `${name}\n`.repeat(bytes).slice(0, bytes);
    for (const args of [[], ['--attempt', '1'], ['-f']]) {
      const r = await cliInProcess(['runs', 'logs', id, name, ...args], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.length, bytes, `logs ${args.join(' ')}`);
      assert.ok(r.stdout === expected, `logs ${args.join(' ')}: the attempt's output`);
    }
  });

  it('start warns about runtimes no live agent serves (CLI on stderr, API in the response)', async () => {
    const graph = {
      nodes: [
        { name: 'x', runtime: 'nobody-serves-this' },
        { name: 'y', runtime: 'debug' },
      ],
      edges: [],
    };
    const s = await cliInProcess(['runs', 'start', '-q'], { env, input: JSON.stringify(graph) });
    assert.equal(s.code, 0, s.stderr);
    const id = s.stdout.trim();
    started.push(id);
    assert.equal(
      s.stderr,
      'adagio: warning: no live agent serves runtime "nobody-serves-this" (needed by x): it waits until one registers\n',
    );
    const inspect = await cliInProcess(['runs', 'inspect', id], { env });
    assert.match(inspect.stdout, /^ {2}x +waiting for an agent with runtime "nobody-serves-this"$/m);
    const res = await fetch(`${daemon.address}/v0/runs`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ spec: graph }),
    });
    const body = (await res.json()) as { run: { id: string }; warnings?: string[] };
    started.push(body.run.id);
    assert.deepEqual(body.warnings, [
      'no live agent serves runtime "nobody-serves-this" (needed by x): it waits until one registers',
    ]);
    await client.cancel(id);
    await client.cancel(body.run.id);
  });

  it('agents ls shows the in-process agents and their runtimes', async () => {
    const r = await cli(['agents', 'ls'], { env });
    assert.equal(r.code, 0, r.stderr);
    const [header, ...rows] = r.stdout.trim().split('\n');
    assert.match(header!, /^ID +HOSTNAME +STARTED +RUNTIMES$/);
    assert.ok(rows.length >= 1);
    for (const row of rows) assert.match(row, /\d\dZ +(exec, debug|debug, exec)$/);
    const json = await cliInProcess(['agents', 'ls', '--json'], { env });
    assert.deepEqual(JSON.parse(json.stdout), await getJson('/v0/agents'));
  });

  it('stats counts the runs and nodes; --json matches GET /v0/stats', async () => {
    const r = await cli(['stats'], { env });
    assert.equal(r.code, 0, r.stderr);
    const [header, values] = r.stdout.trim().split('\n');
    assert.match(header!, /^RUNS +NODES +WAITING +READY +RUNNING +COMPLETED$/);
    const [runs, nodes, waiting, ready, running, completed] = values!.trim().split(/\s+/).map(Number);
    assert.equal(runs, started.length);
    assert.equal(nodes, 3 * 7 + 3 + 2 + 1 + 2 * 2 + 6);
    assert.deepEqual([waiting, ready, running, completed], [0, 0, 0, nodes]);
    const json = await cliInProcess(['stats', '--json'], { env });
    assert.deepEqual(JSON.parse(json.stdout), await getJson('/v0/stats'));
  });
});
