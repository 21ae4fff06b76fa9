/**
 * `adagio workflows …` and the workflow, param, name, label and request-id
 * flags of `runs start` and `runs ls` (rules 16, 17), against a real adagiod
 * with exec agents: the example workflow runs to SUCCESS with its params.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AdagioClient } from '../../src/client/index.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { cli, cliInProcess, oneErrorLine } from './helpers.js';

const NIGHTLY = fileURLToPath(new URL('../../examples/definitions/nightly.json', import.meta.url));

describe('adagio workflows and run identity flags', () => {
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let client: AdagioClient;
  let dir: string;

  before(async () => {
    daemon = await startDaemon(['--grace-period', '1s']);
    env = { ADAGIO_ADDRESS: daemon.address };
    client = new AdagioClient({ address: daemon.address });
    dir = await mkdtemp(join(tmpdir(), 'adagio-wf-'));
  });
  after(async () => {
    await daemon?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('workflows put stores a version, again stores nothing; ls and show print it', async () => {
    const put = await cli(['workflows', 'put', NIGHTLY], { env });
    assert.equal(put.code, 0, put.stderr);
    assert.equal(put.stdout, 'stored workflow nightly version 1\n');
    const again = await cliInProcess(['workflows', 'put', NIGHTLY], { env });
    assert.equal(again.stdout, 'workflow nightly unchanged: version 1 has this content\n');
    const ls = await cliInProcess(['workflows', 'ls'], { env });
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME\s+VERSION\s+UPDATED\s+PARAMS\s+DESCRIPTION/);
    assert.match(ls.stdout, /nightly\s+1\s+.*date \(required\), env=staging\s+Extracts one day/);
    const show = await cliInProcess(['workflows', 'show', 'nightly'], { env });
    assert.match(show.stdout, /^workflow nightly version 1/);
    assert.match(show.stdout, /date \(required\)\s+the day to process/);
    assert.match(show.stdout, /adagio runs start --workflow nightly -p date=…/);
    const json = await cliInProcess(['workflows', 'show', 'nightly', '-v', '1', '--json'], { env });
    assert.equal(JSON.parse(json.stdout).version, 1);
    const versions = await cliInProcess(['workflows', 'show', 'nightly', '--versions'], { env });
    assert.match(versions.stdout, /^VERSION\s+CREATED\s+NODES/);
  });

  it('runs start --workflow with params runs it to SUCCESS; a request id repeated returns the same run; runs ls filters', async () => {
    const start = await cli(
      [
        'runs',
        'start',
        '--workflow',
        'nightly',
        '-p',
        'date=2026-01-31',
        '-p',
        'env=prod',
        '--label',
        'team=data',
        '--request-id',
        'cli-1',
        '--watch',
        '--lines',
      ],
      { env },
    );
    assert.equal(start.code, 0, start.stderr + start.stdout);
    const id = /^started run (\S+)/.exec(start.stdout)![1]!;
    const run = await client.inspect(id);
    assert.equal(run.conclusion, 'SUCCESS');
    assert.equal(
      new TextDecoder().decode(run.nodes[1]!.attempts[0]!.output).trim(),
      'loaded 2026-01-31 into prod',
    );
    assert.deepEqual(run.params, { date: '2026-01-31', env: 'prod' });

    const repeat = await cliInProcess(
      ['runs', 'start', '--workflow', 'nightly', '-p', 'date=2026-01-31', '--request-id', 'cli-1', '-q'],
      { env },
    );
    assert.equal(repeat.stdout.trim(), id);
    const empty = await cliInProcess(
      ['runs', 'start', '--workflow', 'nightly', '-p', 'date=2026-01-31', '--request-id', '', '-q'],
      { env },
    );
    assert.equal(empty.code, 2, empty.stderr);
    assert.match(empty.stderr, /^adagio: --request-id must not be empty\n$/);

    const other = await cliInProcess(
      [
        'runs',
        'start',
        '--workflow',
        'nightly',
        '-p',
        'date=d2',
        '--name',
        'adhoc load',
        '--label',
        'team=web',
        '-q',
      ],
      { env },
    );
    const otherId = other.stdout.trim();

    const ls = await cliInProcess(['runs', 'ls', '--workflow', 'nightly', '--label', 'team=data'], { env });
    assert.equal(ls.code, 0, ls.stderr);
    const rows = ls.stdout.trim().split('\n');
    assert.match(rows[0]!, /^ID\s+NAME\s+CREATED\s+STATUS.*LABELS$/);
    assert.equal(rows.length, 2, ls.stdout);
    assert.match(rows[1]!, new RegExp(`^${id}\\s+nightly\\s+.*team=data$`));
    const search = await cliInProcess(['runs', 'ls', '--search', 'ADHOC', '--json'], { env });
    assert.deepEqual(
      JSON.parse(search.stdout).runs.map((r: { id: string }) => r.id),
      [otherId],
    );
    const done = await cliInProcess(
      ['runs', 'ls', '--status', 'completed', '--conclusion', 'success', '--json'],
      { env },
    );
    assert.ok(JSON.parse(done.stdout).runs.some((r: { id: string }) => r.id === id));
  });

  it('refuses bad input with one line naming it', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({
        name: 'bad',
        spec: { nodes: [{ name: 'a', runtime: 'x', metadata: { k: { values: ['{{params.nope}}'] } } }] },
      }),
    );
    const cases: [string[], number, RegExp][] = [
      [['workflows', 'put', bad], 2, /bad\.json: .*declares no param "nope"/],
      [['workflows', 'show', 'missing'], 3, /workflow "missing" not found/],
      [['runs', 'start', '--workflow', 'nightly'], 2, /missing required param "date"/],
      [['runs', 'start', '--workflow', 'nope'], 3, /workflow "nope" not found/],
      [
        ['runs', 'start', '--workflow', 'nightly', '-p', 'date=d', '-p', 'colour=red'],
        2,
        /unknown param "colour"/,
      ],
      [['runs', 'start', '--workflow', 'nightly', '-p', 'date'], 2, /--param takes key=value/],
      [['runs', 'start', NIGHTLY, '--workflow', 'nightly'], 2, /not both/],
      [['runs', 'ls', '--status', 'DONE'], 2, /--status must be one of/],
      // A key given twice with two values is ambiguous: last-wins would drop a filter or a param silently.
      [
        ['runs', 'start', '--workflow', 'nightly', '-p', 'date=a', '-p', 'date=b'],
        2,
        /--param date given twice: "a" and "b"/,
      ],
      [['runs', 'ls', '--label', 'env=a', '--label', 'env=b'], 2, /--label env given twice: "a" and "b"/],
      [['workflows', 'rm', 'missing'], 3, /workflow "missing" not found/],
    ];
    for (const [args, code, message] of cases) {
      const r = await cliInProcess(args, { env });
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.match(oneErrorLine(r.stderr), message, args.join(' '));
    }
  });

  it('workflows put refuses a key a workflow file does not have, as the API does, naming the file and key', async () => {
    const typo = join(dir, 'typo.json');
    const paramTypo = join(dir, 'param-typo.json');
    const spec = { nodes: [{ name: 'a', runtime: 'debug' }] };
    await writeFile(typo, JSON.stringify({ name: 'typo', spec, parms: [{ name: 'date', required: true }] }));
    await writeFile(
      paramTypo,
      JSON.stringify({ name: 'typo', spec, params: [{ name: 'date', requird: true, default: 'x' }] }),
    );
    const [top, param] = await Promise.all([
      cli(['workflows', 'put', typo], { env }),
      cliInProcess(['workflows', 'put', paramTypo], { env }),
    ]);
    for (const r of [top, param]) assert.equal(r.code, 2, r.stderr);
    assert.match(oneErrorLine(top.stderr), /^adagio: \S*typo\.json: unknown key "parms" \(the keys are /);
    assert.match(
      oneErrorLine(param.stderr),
      /^adagio: \S*param-typo\.json: params\[0\]: unknown key "requird"/,
    );
    assert.ok(!(await client.listWorkflows()).some((w) => w.name === 'typo'), 'nothing stored');
  });

  it('workflows rm deletes it; --help documents every command', async () => {
    await client.putWorkflow('gone', {
      spec: { nodes: [{ name: 'a', runtime: 'debug', metadata: {}, retry: {} }], edges: [] },
    });
    const rmr = await cliInProcess(['workflows', 'rm', 'gone'], { env });
    assert.equal(rmr.stdout, 'deleted workflow gone (its runs are kept)\n');
    for (const args of [
      ['workflows', '--help'],
      ['workflows', 'put', '--help'],
      ['workflows', 'ls', '--help'],
      ['workflows', 'show', '--help'],
      ['workflows', 'rm', '--help'],
    ]) {
      const r = await cliInProcess(args, { env });
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /Usage: adagio workflows/);
    }
    const start = await cliInProcess(['runs', 'start', '--help'], { env });
    for (const flag of ['--workflow', '--param', '--label', '--name', '--request-id', '--workflow-version'])
      assert.ok(start.stdout.includes(flag), flag);
    const ls = await cliInProcess(['runs', 'ls', '--help'], { env });
    for (const flag of ['--workflow', '--label', '--status', '--conclusion', '--search'])
      assert.ok(ls.stdout.includes(flag), flag);
  });
});
