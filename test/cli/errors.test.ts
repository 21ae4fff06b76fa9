/**
 * `adagio` when things go wrong: every error is one `adagio: …` line on
 * stderr with a non-zero exit code (2 usage/bad input, 3 daemon refused or
 * unreachable), never a stack trace. Also --help on every command, and
 * bearer-token auth against a daemon started with --api-token.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { cli, cliInProcess, closedPort, oneErrorLine, SEVEN_NODE } from './helpers.js';

const TOKEN = 'cli-test-token';

describe('adagio CLI errors, help and auth', () => {
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let dir: string;

  before(async () => {
    [daemon, dir] = await Promise.all([
      startDaemon(['--api-token', TOKEN]),
      mkdtemp(join(tmpdir(), 'adagio-cli-')),
    ]);
    env = { ADAGIO_ADDRESS: daemon.address, ADAGIO_TOKEN: TOKEN };
  });
  after(async () => {
    await daemon?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('unknown run: one clear line, exit 3, for inspect, watch and cancel', async () => {
    const results = await Promise.all([
      cli(['runs', 'inspect', '01NOSUCHRUN0000000000000000'], { env }),
      cliInProcess(['runs', 'watch', '01NOSUCHRUN0000000000000000'], { env }),
      cliInProcess(['runs', 'cancel', '01NOSUCHRUN0000000000000000'], { env }),
    ]);
    for (const r of results) {
      assert.equal(r.code, 3, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(oneErrorLine(r.stderr), /^adagio: run "01NOSUCHRUN0000000000000000" not found$/);
    }
  });

  it('bad graph input: missing file, malformed JSON, wrong shape, invalid graph → exit 2 naming the problem', async () => {
    const malformed = join(dir, 'malformed.json');
    const wrongShape = join(dir, 'wrong-shape.json');
    const cyclic = join(dir, 'cyclic.json');
    await writeFile(malformed, '{"nodes": [ {"name": "a", ');
    await writeFile(wrongShape, '{"nodes": "a"}');
    await writeFile(
      cyclic,
      JSON.stringify({
        nodes: [
          { name: 'a', runtime: 'debug' },
          { name: 'b', runtime: 'debug' },
          { name: '', runtime: 'debug' },
        ],
        edges: [
          { source: 'a', destination: 'b' },
          { source: 'b', destination: 'a' },
        ],
      }),
    );
    const [missing, bad, shape, invalid, cycle, empty] = await Promise.all([
      cli(['runs', 'start', join(dir, 'nope.json')], { env }),
      cli(['runs', 'start', malformed], { env }),
      cliInProcess(['runs', 'start', wrongShape], { env }),
      cli(['runs', 'start', cyclic], { env }),
      cliInProcess(['runs', 'start', '-'], {
        env,
        input:
          '{"nodes":[{"name":"a","runtime":"x"},{"name":"b","runtime":"x"}],"edges":[{"source":"a","destination":"b"},{"source":"b","destination":"a"}]}',
      }),
      cliInProcess(['runs', 'start'], { env, input: '' }),
    ]);
    for (const r of [missing, bad, shape, invalid, cycle, empty]) {
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
    }
    assert.equal(oneErrorLine(missing.stderr), `adagio: cannot read ${join(dir, 'nope.json')}: no such file`);
    assert.match(oneErrorLine(bad.stderr), new RegExp(`^adagio: ${malformed}: graph is not valid JSON: `));
    assert.match(oneErrorLine(shape.stderr), new RegExp(`^adagio: ${wrongShape}: graph JSON: .*nodes`));
    assert.equal(oneErrorLine(invalid.stderr), `adagio: ${cyclic}: invalid graph: node #3 has an empty name`);
    assert.equal(oneErrorLine(cycle.stderr), 'adagio: stdin: invalid graph: graph has a cycle: a -> b -> a');
    assert.equal(oneErrorLine(empty.stderr), 'adagio: stdin: empty input; expected a graph in JSON');
    const stats = await cliInProcess(['stats', '--json'], { env });
    assert.deepEqual(JSON.parse(stats.stdout), { stats: {} }, 'nothing reached the daemon');
  });

  it('unreachable daemon: one line naming the address, exit 3', async () => {
    const port = await closedPort();
    const [flag, fromEnv] = await Promise.all([
      cli(['runs', 'ls', '--address', `http://127.0.0.1:${port}`]),
      cliInProcess(['stats'], { env: { ADAGIO_ADDRESS: `127.0.0.1:${port}` } }),
    ]);
    for (const r of [flag, fromEnv]) {
      assert.equal(r.code, 3);
      assert.equal(
        oneErrorLine(r.stderr),
        `adagio: cannot reach adagiod at http://127.0.0.1:${port}: connection refused (is adagiod running?); another address with --address or ADAGIO_ADDRESS`,
      );
    }
  });

  it('usage errors: exit 2 with one line and where to find help', async () => {
    const [option, choice, missingArg, limit, address] = await Promise.all([
      cli(['runs', 'ls', '--bogus'], { env }),
      cliInProcess(['runs', 'inspect', 'x', '-o', 'yaml'], { env }),
      cliInProcess(['runs', 'inspect'], { env }),
      cliInProcess(['runs', 'ls', '--limit', '0'], { env }),
      cliInProcess(['stats', '--address', 'ftp://example'], { env }),
    ]);
    for (const r of [option, choice, missingArg, limit, address]) assert.equal(r.code, 2, r.stderr);
    assert.equal(
      oneErrorLine(option.stderr),
      "adagio: unknown option '--bogus' (see 'adagio runs ls --help')",
    );
    assert.match(
      oneErrorLine(choice.stderr),
      /Allowed choices are pretty, json, dot, timeline\. \(see 'adagio runs inspect --help'\)$/,
    );
    assert.equal(
      oneErrorLine(missingArg.stderr),
      "adagio: missing required argument 'id' (see 'adagio runs inspect --help')",
    );
    assert.equal(oneErrorLine(limit.stderr), 'adagio: --limit: "0" is not a whole number from 1 to 1000');
    assert.equal(
      oneErrorLine(address.stderr),
      'adagio: --address: "ftp://example" must be an http:// or https:// address',
    );
  });

  it('auth: a missing or wrong token is refused (exit 3); --token and ADAGIO_TOKEN are sent', async () => {
    const address = daemon.address;
    const [none, wrong, flag, fromEnv] = await Promise.all([
      cliInProcess(['stats'], { env: { ADAGIO_ADDRESS: address } }),
      cli(['stats', '--token', 'nope'], { env: { ADAGIO_ADDRESS: address } }),
      cliInProcess(['--token', TOKEN, 'stats'], { env: { ADAGIO_ADDRESS: address } }),
      cliInProcess(['stats'], { env }),
    ]);
    for (const r of [none, wrong]) {
      assert.equal(r.code, 3);
      assert.match(oneErrorLine(r.stderr), /^adagio: .*(token|unauthenticated|authoriz)/i);
    }
    for (const r of [flag, fromEnv]) assert.equal(r.code, 0, r.stderr);
  });

  it('--help through the binary: usage on stdout, exit 0', async () => {
    const [top, start] = await Promise.all([cli(['--help']), cli(['runs', 'start', '--help'])]);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /^Usage: adagio \[options\] \[command\]/);
    assert.match(top.stdout, /^ {2}runs +start, list, inspect, watch, cancel and retry runs$/m);
    assert.equal(start.code, 0);
    assert.match(start.stdout, /^Usage: adagio runs start \[options\] \[file\]/);
    assert.match(start.stdout, /-q, --quiet +print only the run id/);
    assert.match(start.stdout, /Global Options:\n.*--address <url>/s);
    const bare = await cli([]);
    assert.equal(bare.code, 2, 'no command is a usage error');
    assert.match(bare.stderr, /^Usage: adagio/);
  });

  it('the help command: help asked for exits 0 (on stdout); an unknown command is one line with the suggestion', async () => {
    const [top, runs, ls, bogus] = await Promise.all([
      cli(['help']),
      cliInProcess(['help', 'runs']),
      cliInProcess(['runs', 'help', 'ls']),
      cli(['runs', 'bogus']),
    ]);
    for (const [r, usage] of [
      [top, 'Usage: adagio [options] [command]'],
      [runs, 'Usage: adagio runs [options] [command]'],
      [ls, 'Usage: adagio runs ls|list [options]'],
    ] as const) {
      assert.equal(r.code, 0, usage);
      assert.equal(r.stderr, '');
      assert.ok(r.stdout.startsWith(usage), r.stdout.slice(0, 80));
    }
    assert.equal(bogus.code, 2);
    assert.equal(
      oneErrorLine(bogus.stderr),
      "adagio: unknown command 'bogus' (Did you mean logs?) (see 'adagio runs --help')",
    );
  });

  it('--help on every command (in process: the same program the binary runs)', async () => {
    const commands = [
      [],
      ['runs'],
      ['runs', 'ls'],
      ['runs', 'start'],
      ['runs', 'inspect'],
      ['runs', 'watch'],
      ['runs', 'cancel'],
      ['agents'],
      ['agents', 'ls'],
      ['stats'],
    ];
    for (const path of commands) {
      const r = await cliInProcess([...path, '--help']);
      assert.equal(r.code, 0, path.join(' '));
      assert.equal(r.stderr, '');
      const usage = ['Usage: adagio', ...path].join(' ');
      assert.ok(r.stdout.startsWith(usage), `${path.join(' ')}: ${r.stdout.slice(0, 80)}`);
    }
  });

  it('the example graph is accepted as is (sanity for the cases above)', async () => {
    const r = await cliInProcess(['runs', 'start', SEVEN_NODE, '-q', '--watch'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^[0-9A-Z]{26}\n$/);
  });
});
