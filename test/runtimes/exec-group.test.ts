/**
 * exec's process group: nothing a command started may outlive its attempt,
 * whether it was stopped (cancel, timeout, shutdown) or exited on its own.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { AgentPool } from '../../src/agent/index.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { execRuntime } from '../../src/runtimes/exec.js';
import { args, context, text } from './context.js';

const dir = await mkdtemp(join(tmpdir(), 'adagio-exec-group-'));
/** Pids the tests' commands started, killed after the file whatever happened. */
const started: number[] = [];
after(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  }
  await rm(dir, { recursive: true, force: true });
});

let files = 0;
/**
 * A shell command starting a background grandchild that ignores SIGTERM and
 * writes its pid to the returned file, then running `then(pidFile)`.
 */
function stubbornGrandchild(then: (pidFile: string) => string): { script: string; pidFile: string } {
  const pidFile = join(dir, `pid-${++files}`);
  // An ignored signal stays ignored across exec: the sleep itself ignores SIGTERM.
  const child = `trap '' TERM; echo \\$\\$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; exec sleep 300`;
  return { script: `sh -c "${child}" >/dev/null 2>&1 & ${then(pidFile)}`, pidFile };
}

async function pidFrom(file: string): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      const pid = Number((await readFile(file, 'utf8')).trim());
      started.push(pid);
      return pid;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Running: it exists and is not a zombie (the container's init may never reap an orphan). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    try {
      process.kill(pid, 0);
      return process.platform !== 'linux';
    } catch {
      return false;
    }
  }
}

/** Whether `pid` stops running within `ms` (generous: the machine may be loaded). */
async function endsWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (running(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('exec process group', () => {
  it('a stop SIGKILLs, after the grace, a grandchild ignoring SIGTERM even when the command died at SIGTERM', async () => {
    const exec = execRuntime({ killGraceMs: 300 });
    const { script, pidFile } = stubbornGrandchild(() => 'sleep 300');
    const ac = new AbortController();
    const pending = exec.run(
      context('exec', args('exec', { command: 'sh', args: ['-c', script] }), { signal: ac.signal }),
    );
    const pid = await pidFrom(pidFile);
    assert.ok(running(pid), 'the grandchild runs');
    ac.abort(new Error('run cancelled'));
    const r = await pending;
    assert.equal(r.conclusion, 'ERROR');
    assert.match(text(r.output), /interrupted: run cancelled; killed/);
    assert.ok(await endsWithin(pid, 5000), 'the grandchild was killed with its group');
  });

  it('what a command leaves running when it exits is stopped with the attempt', async () => {
    const exec = execRuntime({ killGraceMs: 300 });
    const { script, pidFile } = stubbornGrandchild(
      (pidFile) => `until [ -s ${pidFile} ]; do sleep 0.05; done; echo done`,
    );
    const r = await exec.run(context('exec', args('exec', { command: 'sh', args: ['-c', script] })));
    assert.equal(r.conclusion, 'SUCCESS');
    assert.equal(text(r.output), 'done\n');
    assert.ok(await endsWithin(await pidFrom(pidFile), 5000), 'the background grandchild was killed');
  });

  it("an agent pool's shutdown leaves nothing of an exec command running", async () => {
    const repo = new MemoryRepository({ leaseCheckIntervalMs: 20 });
    const pool = new AgentPool({
      repository: repo,
      runtimes: [execRuntime({ killGraceMs: 300 })],
      concurrency: 1,
      abortWaitMs: 5000,
    });
    try {
      await pool.start();
      const { script, pidFile } = stubbornGrandchild(() => 'sleep 300');
      await repo.start({
        nodes: [
          {
            name: 'job',
            runtime: 'exec',
            metadata: args('exec', { command: 'sh', args: ['-c', script] }),
            retry: {},
          },
        ],
        edges: [],
      });
      const pid = await pidFrom(pidFile);
      assert.ok(running(pid), 'the grandchild runs');
      await pool.stop({ graceMs: 100 });
      assert.ok(
        await endsWithin(pid, 5000),
        'the grandchild was killed before or soon after the pool stopped',
      );
    } finally {
      await pool.stop({ graceMs: 0 });
      await repo.close();
    }
  });

  it('a process exiting before the grace is over SIGKILLs the group of a stopped command first', async () => {
    // As adagiod does: process.exit() once its shutdown is done, which drops the pending SIGKILL's timer.
    const { script, pidFile } = stubbornGrandchild(() => 'sleep 300');
    const exec = new URL('../../src/runtimes/exec.ts', import.meta.url).href;
    const ctx = new URL('./context.ts', import.meta.url).href;
    const program = `
      import { execRuntime } from ${JSON.stringify(exec)};
      import { args, context } from ${JSON.stringify(ctx)};
      import { existsSync } from 'node:fs';
      const ac = new AbortController();
      execRuntime({ killGraceMs: 600_000 }).run(
        context('exec', args('exec', { command: 'sh', args: ['-c', ${JSON.stringify(script)}] }), { signal: ac.signal }),
      );
      const poll = setInterval(() => {
        if (!existsSync(${JSON.stringify(pidFile)})) return;
        clearInterval(poll);
        ac.abort(new Error('shutting down'));
        setTimeout(() => process.exit(0), 100);
      }, 20);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', program], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, stderr);
    assert.ok(await endsWithin(await pidFrom(pidFile), 5000), 'the grandchild did not outlive the process');
  });
});
