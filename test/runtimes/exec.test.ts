import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { execRuntime } from '../../src/runtimes/exec.js';
import { args, context, text } from './context.js';

const exec = execRuntime({ killGraceMs: 200 });

describe('exec runtime', () => {
  it('exit 0 is SUCCESS with stdout and stderr combined', async () => {
    const r = await exec.run(
      context('exec', args('exec', { command: 'sh', args: ['-c', 'echo out; echo err >&2'] })),
    );
    assert.equal(r.conclusion, 'SUCCESS');
    assert.equal(text(r.output), 'out\nerr\n');
    assert.deepEqual(r.metadata?.['adagio.exec.exit_code'], ['0']);
  });

  it('passes arguments without a shell', async () => {
    const r = await exec.run(
      context('exec', args('exec', { command: 'echo', args: ['$HOME', 'a b', ';ls'] })),
    );
    assert.equal(text(r.output), '$HOME a b ;ls\n');
  });

  it('a non-zero exit is FAIL with the output', async () => {
    const r = await exec.run(
      context('exec', args('exec', { command: 'sh', args: ['-c', 'echo broken >&2; exit 3'] })),
    );
    assert.equal(r.conclusion, 'FAIL');
    assert.equal(text(r.output), 'broken\n');
    assert.deepEqual(r.metadata?.['adagio.exec.exit_code'], ['3']);
  });

  it('a command that cannot start is ERROR naming it', async () => {
    const r = await exec.run(context('exec', args('exec', { command: 'no-such-command-adagio' })));
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /cannot start: "no-such-command-adagio" is not found on the agent's PATH/);
  });

  it('a missing working directory is ERROR naming it', async () => {
    const r = await exec.run(context('exec', args('exec', { command: 'true', dir: '/no/such/dir' })));
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /working directory "\/no\/such\/dir" does not exist/);
  });

  it('the timeout argument kills the program (and its children) and is ERROR', async () => {
    const started = Date.now();
    const r = await exec.run(
      context(
        'exec',
        args('exec', { command: 'sh', args: ['-c', 'echo begun; sleep 30'], timeout: '200ms' }),
      ),
    );
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /^begun\n\[adagio\] exec: "sh" timed out after 200ms; killed/);
    assert.ok(Date.now() - started < 10_000, 'killed well before the sleep ends');
  });

  it('timeout 0 is no limit, and one past 2^31-1 ms (about 24.8 days) does not fire at once', async () => {
    for (const timeout of ['0', '600h']) {
      const r = await exec.run(
        context('exec', args('exec', { command: 'sh', args: ['-c', 'sleep 0.3; echo finished'], timeout })),
      );
      assert.equal(r.conclusion, 'SUCCESS', `timeout ${timeout}: ${text(r.output)}`);
      assert.equal(text(r.output), 'finished\n');
    }
  });

  it('a program ignoring SIGTERM is killed with SIGKILL after the grace period', async () => {
    const r = await exec.run(
      context(
        'exec',
        args('exec', { command: 'sh', args: ['-c', "trap '' TERM; echo ready; sleep 30"], timeout: '300ms' }),
      ),
    );
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /timed out after 300ms; killed/);
  });

  it('aborting ctx.signal kills the program', async () => {
    const ac = new AbortController();
    const pending = exec.run(
      context('exec', args('exec', { command: 'sleep', args: ['30'] }), { signal: ac.signal }),
    );
    setTimeout(() => ac.abort(new Error('run cancelled')), 100);
    const r = await pending;
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /interrupted: run cancelled; killed/);
  });

  it('env, dir and stdin are passed to the program', async () => {
    const r = await exec.run(
      context(
        'exec',
        {
          ...args('exec', {
            command: 'sh',
            args: ['-c', 'echo "$GREETING $(pwd)"; cat'],
            env: ['GREETING=hi'],
            dir: '/tmp',
          }),
          'adagio.inputs.exec.stdin': ['up'],
        },
        { inputs: { up: 'from upstream\n' } },
      ),
    );
    assert.equal(r.conclusion, 'SUCCESS');
    assert.equal(text(r.output), 'hi /tmp\nfrom upstream');
  });

  it('output over the cap is truncated with a marker', async () => {
    const small = execRuntime({ maxOutputBytes: 1000 });
    const r = await small.run(
      context('exec', args('exec', { command: 'sh', args: ['-c', 'yes | head -c 100000'] })),
    );
    assert.equal(r.conclusion, 'SUCCESS');
    const out = r.output as Uint8Array;
    assert.equal(out.byteLength, 1000);
    assert.match(text(out), /output truncated by adagio\]$/);
  });

  it('streamed output (ctx.write) is capped too, the cut marked as in a returned output', async () => {
    const small = execRuntime({ maxOutputBytes: 1000 });
    const chunks: Uint8Array[] = [];
    const r = await small.run({
      ...context('exec', args('exec', { command: 'sh', args: ['-c', 'yes | head -c 100000'] })),
      write: (chunk) => {
        chunks.push(typeof chunk === 'string' ? new TextEncoder().encode(chunk) : chunk);
      },
    });
    assert.equal(r.conclusion, 'SUCCESS');
    assert.equal(text(r.output), '', 'the output itself was streamed');
    const streamed = Buffer.concat(chunks);
    assert.equal(streamed.byteLength, 1000);
    assert.match(text(streamed), /^(y\n)+y?\n…\[output truncated by adagio\]$/);
  });

  it('an allow-list refuses other commands with ERROR', async () => {
    const allowed = execRuntime({ allow: ['echo'] });
    const ok = await allowed.run(context('exec', args('exec', { command: 'echo', args: ['x'] })));
    assert.equal(ok.conclusion, 'SUCCESS');
    const no = await allowed.run(context('exec', args('exec', { command: 'rm', args: ['-rf', '/tmp/x'] })));
    assert.equal(no.conclusion, 'ERROR');
    assert.match(
      text(no.output),
      /command "rm" \(\/usr\/bin\/rm\) is not allowed on this agent \(allowed: echo\)/,
    );
  });

  it('allow-list entries are globs over the command', async () => {
    const allowed = execRuntime({ allow: ['/bin/ec*', 'tru?'] });
    const run = (command: string) => allowed.run(context('exec', args('exec', { command })));
    assert.equal((await run('/bin/echo')).conclusion, 'SUCCESS');
    assert.equal((await run('true')).conclusion, 'SUCCESS');
    assert.equal((await run('echo')).conclusion, 'ERROR', 'a glob matches the whole command, not a suffix');
    assert.equal((await run('truee')).conclusion, 'ERROR');
  });

  it('the command sees the attempt in ADAGIO_* variables (the claim id is an idempotency key)', async () => {
    const r = await exec.run(
      context(
        'exec',
        args('exec', {
          command: 'sh',
          args: ['-c', 'echo "$ADAGIO_RUN_ID $ADAGIO_NODE $ADAGIO_ATTEMPT $ADAGIO_CLAIM_ID"'],
        }),
      ),
    );
    const ctx = context('exec');
    assert.equal(text(r.output).trim(), `${ctx.runId} ${ctx.node.spec.name} ${ctx.attempt} ${ctx.claimId}`);
  });

  it('a missing command argument is ERROR naming it', async () => {
    const r = await exec.run(context('exec', {}));
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /missing required argument "command" of runtime "exec"/);
  });
});
