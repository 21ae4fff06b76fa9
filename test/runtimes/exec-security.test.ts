/**
 * The exec allow-list and environment hold against the walk-arounds of issue 17
 * (docs/security.md): `..` and symlinks are judged by the file they reach, the
 * `env` argument cannot change what runs or loads, and commands never see the
 * daemon's own ADAGIOD_* settings. Real processes and real files throughout.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execRuntime } from '../../src/runtimes/exec.js';
import { args, context, text } from './context.js';

describe('exec allow-list and environment', () => {
  let root: string;
  let allowed: string;
  let fakeBin: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'adagio-exec-sec-'));
    allowed = join(root, 'allowed', 'dir');
    fakeBin = join(root, 'fake-bin');
    mkdirSync(allowed, { recursive: true });
    mkdirSync(fakeBin);
    writeFileSync(join(allowed, 'job.sh'), '#!/bin/sh\necho job ran\n');
    chmodSync(join(allowed, 'job.sh'), 0o755);
    symlinkSync('/bin/sh', join(allowed, 'innocent'));
    writeFileSync(join(fakeBin, 'echo'), '#!/bin/sh\necho PWNED\n');
    chmodSync(join(fakeBin, 'echo'), 0o755);
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  const run = (
    runtime: ReturnType<typeof execRuntime>,
    values: Record<string, string | string[]>,
  ): ReturnType<ReturnType<typeof execRuntime>['run']> => runtime.run(context('exec', args('exec', values)));

  it('a file in the allowed folder runs', async () => {
    const exec = execRuntime({ allow: [`${allowed}/*`] });
    const r = await run(exec, { command: join(allowed, 'job.sh') });
    assert.equal(r.conclusion, 'SUCCESS', text(r.output));
    assert.equal(text(r.output), 'job ran\n');
  });

  it('`/allowed/dir/../../bin/sh` is judged by the file it reaches and refused', async () => {
    const exec = execRuntime({ allow: [`${allowed}/*`] });
    const command = `${allowed}/${relative(allowed, '/bin/sh')}`; // …/allowed/dir/../../../bin/sh
    assert.ok(command.startsWith(`${allowed}/../`), `${command} walks out of the folder`);
    const r = await run(exec, { command, args: ['-c', 'id'] });
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /is not allowed on this agent/);
  });

  it('a symlink inside the allowed folder is judged by its target and refused', async () => {
    const exec = execRuntime({ allow: [`${allowed}/*`] });
    const r = await run(exec, { command: join(allowed, 'innocent'), args: ['-c', 'id'] });
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /innocent" \(\/[^)]+\) is not allowed/);
  });

  it('PATH in env cannot swap an allowed bare name for another program', async () => {
    const exec = execRuntime({ allow: ['echo'] });
    const r = await run(exec, { command: 'echo', args: ['hi'], env: [`PATH=${fakeBin}`] });
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /PATH may not be set by a node/);
    assert.doesNotMatch(text(r.output), /PWNED/);
  });

  it('LD_PRELOAD, BASH_ENV, ENV and NODE_OPTIONS in env are refused (any letter case)', async () => {
    const exec = execRuntime();
    for (const entry of [
      'LD_PRELOAD=/tmp/evil.so',
      'BASH_ENV=/tmp/x',
      'ENV=/tmp/x',
      'NODE_OPTIONS=--require=/x',
      'ld_library_path=/x',
      'PYTHONPATH=/x',
      'DYLD_INSERT_LIBRARIES=/x',
      'ADAGIOD_API_TOKEN=x',
    ]) {
      const r = await run(exec, { command: 'true', env: [entry] });
      assert.equal(r.conclusion, 'ERROR', entry);
      assert.match(text(r.output), /may not be set by a node/, entry);
    }
    const ok = await run(exec, { command: 'sh', args: ['-c', 'echo "$GREETING"'], env: ['GREETING=hello'] });
    assert.equal(text(ok.output), 'hello\n', 'ordinary variables still pass');
  });

  it('-exec-unsafe-env lets a named variable through, yet the command is still found on the agent’s PATH', async () => {
    const exec = execRuntime({ allow: ['echo', 'sh'], unsafeEnv: ['PATH'] });
    const r = await run(exec, { command: 'echo', args: ['hi'], env: [`PATH=${fakeBin}`] });
    assert.equal(r.conclusion, 'SUCCESS', text(r.output));
    assert.equal(text(r.output), 'hi\n');
    const path = await run(exec, { command: 'sh', args: ['-c', 'echo "$PATH"'], env: [`PATH=${fakeBin}`] });
    assert.equal(text(path.output), `${fakeBin}\n`);
  });

  it('commands get a clean environment: no ADAGIOD_*, no unlisted variables, PATH and HOME kept', async () => {
    const saved = { ...process.env };
    process.env.ADAGIOD_API_TOKEN = 'people-S3CRET';
    process.env.ADAGIOD_AGENT_TOKEN = 'agent-S3CRET';
    process.env.SOME_DAEMON_SECRET = 'x';
    try {
      const exec = execRuntime({ passEnv: ['PATH', 'HOME', 'ADAGIOD_*'] });
      const r = await run(exec, { command: 'env' });
      const out = text(r.output);
      assert.equal(r.conclusion, 'SUCCESS');
      assert.doesNotMatch(out, /ADAGIOD_|S3CRET/, 'never ADAGIOD_*, even when listed');
      assert.doesNotMatch(out, /SOME_DAEMON_SECRET/);
      assert.match(out, /^PATH=/m);
      assert.match(out, /^ADAGIO_RUN_ID=run-1$/m);
    } finally {
      process.env = saved;
    }
  });

  it('an exact allowed path that is a symlink is resolved once, and bare names never match a path', async () => {
    const exec = execRuntime({ allow: ['/bin/sh', 'true'] });
    assert.equal((await run(exec, { command: '/bin/sh', args: ['-c', 'true'] })).conclusion, 'SUCCESS');
    assert.equal((await run(exec, { command: '/usr/bin/true' })).conclusion, 'ERROR');
    assert.equal((await run(exec, { command: 'true' })).conclusion, 'SUCCESS');
  });
});
