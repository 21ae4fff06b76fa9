/**
 * `adagio runs retry` and `adagio runs rerun` against a real adagiod (memory
 * backend, in-process debug agents): a failed run with an all_done cleanup
 * node is retried under its id (all of it, then one named node), a succeeded
 * one is refused with one clear line, and a rerun starts a new run of the
 * same graph. `inspect` shows the non-default trigger.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec } from '../../src/model/types.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { cli, cliInProcess, eventually, oneErrorLine } from './helpers.js';

const debug = (name: string, conclusion: string, trigger?: string) => ({
  name,
  runtime: 'debug',
  metadata: { 'adagio.arguments.debug.conclusion': [conclusion] },
  retry: {},
  ...(trigger ? { trigger: trigger as 'all_done' } : {}),
});

const FAILING: GraphSpec = {
  nodes: [debug('ok', 'success'), debug('bad', 'fail'), debug('cleanup', 'success', 'all_done')],
  edges: [
    { source: 'ok', destination: 'bad' },
    { source: 'bad', destination: 'cleanup' },
  ],
};

describe('adagio runs retry / rerun', () => {
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let client: AdagioClient;

  before(async () => {
    daemon = await startDaemon(['--grace-period', '1s']);
    env = { ADAGIO_ADDRESS: daemon.address };
    client = new AdagioClient({ address: daemon.address });
  });
  after(async () => {
    await daemon?.stop();
  });

  const completed = (id: string) =>
    eventually(async () => {
      const run = await client.inspect(id);
      return run.status === 'COMPLETED' ? run : undefined;
    });

  it('retries a failed run under its id; inspect shows the trigger; a named node goes back with its downstream', async () => {
    const run = await client.start(FAILING);
    const first = await completed(run.id);
    assert.equal(first.conclusion, 'FAIL');
    assert.equal(first.nodes.find((n) => n.spec.name === 'cleanup')!.attempts.length, 1, 'cleanup ran');

    const inspect = await cliInProcess(['runs', 'inspect', run.id], { env });
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.match(inspect.stdout, /bad \[all_done\]/);

    const r = await cli(['runs', 'retry', run.id], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^retried run ${run.id} RUNNING`));
    const second = await completed(run.id);
    assert.equal(second.conclusion, 'FAIL');
    const bad = second.nodes.find((n) => n.spec.name === 'bad')!;
    assert.equal(bad.attempts.length, 2, 'bad ran again, its first attempt kept');
    assert.equal(second.nodes.find((n) => n.spec.name === 'ok')!.attempts.length, 1, 'ok did not');
    assert.equal(
      second.nodes.find((n) => n.spec.name === 'cleanup')!.attempts.length,
      1,
      'cleanup succeeded, kept',
    );

    const named = await cliInProcess(['runs', 'retry', run.id, '--node', 'ok', '--json'], { env });
    assert.equal(named.code, 0, named.stderr);
    assert.equal((JSON.parse(named.stdout) as { run: { id: string } }).run.id, run.id);
    const third = await completed(run.id);
    assert.equal(third.nodes.find((n) => n.spec.name === 'ok')!.attempts.length, 2);
    assert.equal(third.nodes.find((n) => n.spec.name === 'cleanup')!.attempts.length, 2);
  });

  it('refuses a retry of a succeeded run with one line, exit non-zero; rerun starts a new run', async () => {
    const run = await client.start({ nodes: [debug('only', 'success')], edges: [] });
    await completed(run.id);
    const refused = await cliInProcess(['runs', 'retry', run.id], { env });
    assert.notEqual(refused.code, 0);
    assert.match(oneErrorLine(refused.stderr), /succeeded: nothing to retry/);

    const rerun = await cliInProcess(['runs', 'rerun', run.id, '-q'], { env });
    assert.equal(rerun.code, 0, rerun.stderr);
    const id = rerun.stdout.trim();
    assert.notEqual(id, run.id);
    const again = await completed(id);
    assert.deepEqual(
      again.nodes.map((n) => n.spec),
      (await client.inspect(run.id)).nodes.map((n) => n.spec),
      'the same graph',
    );
  });

  it('retry and rerun --watch take --lines like start --watch, and exit as the watched run ended; a refused retry exits 3', async () => {
    const run = await client.start(FAILING);
    await completed(run.id);
    const retried = await cliInProcess(['runs', 'retry', run.id, '--watch', '--lines'], { env });
    assert.equal(retried.code, 1, retried.stderr);
    assert.match(retried.stdout, new RegExp(`^retried run ${run.id}`));
    assert.match(retried.stdout, /COMPLETED FAIL/);
    const rerun = await cliInProcess(['runs', 'rerun', run.id, '-w', '--lines'], { env });
    assert.equal(rerun.code, 1, rerun.stderr);
    assert.match(rerun.stdout, /a rerun of/);

    const running = await client.start({
      nodes: [{ ...debug('slow', 'success'), metadata: { 'adagio.arguments.debug.sleep': ['30s'] } }],
      edges: [],
    });
    const refused = await cliInProcess(['runs', 'retry', running.id], { env });
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(oneErrorLine(refused.stderr), /is (WAITING|RUNNING): only a completed run/);
    await client.cancel(running.id);
  });

  it('documents both commands in --help', async () => {
    for (const cmd of ['retry', 'rerun']) {
      const r = await cliInProcess(['runs', cmd, '--help'], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`Usage: adagio runs ${cmd}`));
    }
    const retry = await cliInProcess(['runs', 'retry', '--help'], { env });
    assert.match(retry.stdout, /--node <name>/);
  });
});
