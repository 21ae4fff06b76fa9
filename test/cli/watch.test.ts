/**
 * `adagio runs watch` and `runs logs -f` against a real adagiod: catch-up
 * lines carry the time each transition happened, running nodes' output is
 * shown as `NODE | line`, and a daemon that goes away mid-watch is named.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec } from '../../src/model/types.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { cli, eventually } from './helpers.js';

/** `12:00:01.234`, local time, as the watch prints it. */
function clock(rfc3339: string): string {
  const d = new Date(rfc3339);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function shell(name: string, script: string): GraphSpec['nodes'][number] {
  return {
    name,
    runtime: 'exec',
    metadata: { 'adagio.arguments.exec.command': ['sh'], 'adagio.arguments.exec.args': ['-c', script] },
    retry: {},
  };
}

/** Resolves once `text` shows up in a command's stdout (see cli's onStdout). */
function seen(text: string): { onStdout: (out: string) => void; promise: Promise<void> } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { onStdout: (out) => out.includes(text) && resolve(), promise };
}

describe('adagio runs watch', { timeout: 180_000 }, () => {
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

  it('a watch joining late stamps each catch-up line with when it happened, in time order', async () => {
    const run = await client.start({
      nodes: [shell('first', 'true'), shell('second', 'true')],
      edges: [{ source: 'first', destination: 'second' }],
    });
    await eventually(async () => ((await client.inspect(run.id)).status === 'COMPLETED' ? true : undefined));
    const done = await client.inspect(run.id);
    const r = await cli(['runs', 'watch', run.id], { env });
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    for (const n of done.nodes)
      assert.match(
        r.stdout,
        new RegExp(`^${clock(n.finishedAt)} {2}${n.spec.name} +COMPLETED {2}SUCCESS`, 'm'),
      );
    const first = lines.findIndex((l) => l.includes(' first '));
    const second = lines.findIndex((l) => l.includes(' second '));
    assert.ok(first > 0 && first < second, r.stdout);
  });

  it('shows what running nodes print, as NODE | line, from before the watch joined too', async () => {
    const run = await client.start({
      nodes: [shell('talk', 'echo hello; echo "wide   world"; exec sleep 600')],
      edges: [],
    });
    // Some output exists before the watch starts: the snapshot carries it.
    await eventually(async () => {
      const n = (await client.inspect(run.id)).nodes[0]!;
      return n.liveOutput && new TextDecoder().decode(n.liveOutput).includes('world') ? true : undefined;
    });
    const wait = seen('| wide   world');
    const watching = cli(['runs', 'watch', run.id], { env, onStdout: wait.onStdout });
    await wait.promise;
    await client.cancel(run.id);
    const r = await watching;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /^\d\d:\d\d:\d\d\.\d{3} {2}talk {2}\| hello$/m);
    assert.match(r.stdout, /^\d\d:\d\d:\d\d\.\d{3} {2}talk {2}\| wide {3}world$/m);
    assert.equal(r.stdout.match(/\| hello/g)?.length, 1, 'each line once');

    const quiet = await cli(['runs', 'watch', '--no-output', run.id], { env });
    assert.doesNotMatch(quiet.stdout, /\| /);
  });

  it('says the daemon went away when it dies during watch and logs -f (exit 3)', async () => {
    const own = await startDaemon(['--grace-period', '1s']);
    try {
      const ownEnv = { ADAGIO_ADDRESS: own.address };
      const ownClient = new AdagioClient({ address: own.address });
      const run = await ownClient.start({
        nodes: [shell('long', 'echo started; exec sleep 600')],
        edges: [],
      });
      const watchSeen = seen('| started');
      const logsSeen = seen('started');
      const watching = cli(['runs', 'watch', run.id], { env: ownEnv, onStdout: watchSeen.onStdout });
      const following = cli(['runs', 'logs', '-f', run.id, 'long'], {
        env: ownEnv,
        onStdout: logsSeen.onStdout,
      });
      await Promise.all([watchSeen.promise, logsSeen.promise]);
      await own.stop('SIGKILL');
      for (const r of [await watching, await following]) {
        assert.equal(r.code, 3, r.stderr);
        assert.match(
          r.stderr,
          new RegExp(
            `^adagio: lost the connection to adagiod at ${own.address.replace(/\/$/, '')} while watching run ${run.id}: the daemon went away \\(.+\\); try again once it is back\\n$`,
          ),
        );
      }
    } finally {
      await own.stop('SIGKILL');
    }
  });
});
