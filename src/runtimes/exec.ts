import { type ChildProcess, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { timerDelay } from '../model/duration.js';
import { EXIT_CODE_KEY } from '../model/labels.js';
import { boundedAppend, LIMITS, truncateOutput } from '../model/limits.js';
import { arg } from './args.js';
import { type DefinedRuntime, defineRuntime } from './define.js';
import { formatDuration } from './duration.js';
import { allowListMatcher, resolveCommand } from './exec-command.js';
import { execEnvBuilder } from './exec-env.js';
import type { RuntimeResult } from './runtime.js';
import { abortReason } from './sleep.js';

/**
 * `exec`: runs a program without a shell (arguments are passed as they are,
 * never re-parsed). The attempt's output is stdout and stderr interleaved as
 * they arrive. Exit 0 → SUCCESS; another exit code or a signal → FAIL; the
 * program cannot start, times out or is interrupted → ERROR. The program runs
 * in its own process group, and the attempt ends with the group: what the
 * program leaves running when it exits or is stopped gets SIGTERM, then SIGKILL
 * after the grace, before the attempt's result is given.
 */
export const EXEC_ARGS = {
  command: arg.string({
    description: "program to run, found on the agent's PATH unless it contains a slash",
  }),
  args: arg.strings({ optional: true }),
  /** Kill the program after this long (0: no limit; capped at about 24.8 days); the agent's own runtime timeout applies as well. */
  timeout: arg.duration({ optional: true }),
  /** `NAME=value` entries added to the command's environment; loader variables (PATH, LD_*…) refused. */
  env: arg.strings({ optional: true }),
  dir: arg.string({ optional: true, description: 'working directory' }),
  /** Written to the program's standard input (typically mapped from an upstream output). */
  stdin: arg.string({ optional: true }),
};

export interface ExecRuntimeOptions {
  /** Globs (`*`, `?`) over the command's real path, or bare names; unset allows any (exec-command.ts). */
  allow?: readonly string[];
  /** Globs of the agent's environment variables a command inherits; default DEFAULT_PASS_ENV (exec-env.ts). */
  passEnv?: readonly string[];
  /** Globs of loader variables (PATH, LD_*…) a node's `env` may set anyway; default none. */
  unsafeEnv?: readonly string[];
  /** Between SIGTERM and SIGKILL when stopping a program. Default 2 s. */
  killGraceMs?: number;
  /** Cap on the program's output, streamed or not (adagio's closing note may follow it); default LIMITS.maxOutputBytes. */
  maxOutputBytes?: number;
}

export function execRuntime(options: ExecRuntimeOptions = {}): DefinedRuntime<typeof EXEC_ARGS> {
  const allow = options.allow ? allowListMatcher(options.allow) : undefined;
  const buildEnv = execEnvBuilder({ pass: options.passEnv, unsafe: options.unsafeEnv });
  const killGraceMs = options.killGraceMs ?? 2000;
  const maxOutput = options.maxOutputBytes ?? LIMITS.maxOutputBytes;
  return defineRuntime({
    name: 'exec',
    args: EXEC_ARGS,
    async run(args, ctx) {
      const { command } = args;
      if (!command) return { conclusion: 'ERROR', output: 'argument "command" of runtime "exec" is empty' };
      // The attempt's identity, so the command can log it or use ADAGIO_CLAIM_ID as an idempotency key.
      const built = buildEnv(
        process.env,
        {
          ADAGIO_RUN_ID: ctx.runId,
          ADAGIO_NODE: ctx.node.spec.name,
          ADAGIO_ATTEMPT: String(ctx.attempt),
          ADAGIO_CLAIM_ID: ctx.claimId,
        },
        args.env ?? [],
      );
      if ('error' in built) return { conclusion: 'ERROR', output: built.error };
      if (args.dir !== undefined) {
        const dirError = await checkDir(args.dir);
        if (dirError)
          return { conclusion: 'ERROR', output: `exec: working directory "${args.dir}" ${dirError}` };
      }
      // Resolved on the agent's own PATH (the env argument cannot set PATH), judged and spawned as that file.
      const resolved = await resolveCommand(command, process.env.PATH ?? '', args.dir);
      if (typeof resolved === 'string')
        return { conclusion: 'ERROR', output: `exec: cannot start: ${resolved}` };
      if (allow && !allow(command, resolved.file))
        return {
          conclusion: 'ERROR',
          output: `exec: command "${command}" (${resolved.file}) is not allowed on this agent (allowed: ${options.allow!.join(', ') || 'none'})`,
        };
      if (ctx.signal.aborted)
        return { conclusion: 'ERROR', output: `exec: not started: ${abortReason(ctx.signal)}` };
      return runProcess({
        command,
        file: resolved.file,
        argv: args.args ?? [],
        env: built.env,
        dir: args.dir,
        stdin: args.stdin,
        timeoutMs: args.timeout,
        signal: ctx.signal,
        killGraceMs,
        maxOutput,
        write: ctx.write,
      });
    },
  });
}

async function checkDir(dir: string): Promise<string | undefined> {
  try {
    return (await stat(dir)).isDirectory() ? undefined : 'is not a directory';
  } catch {
    return 'does not exist';
  }
}

interface ProcessRequest {
  /** As written in the graph: argv[0] and messages. */
  command: string;
  /** The resolved real path that runs. */
  file: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  dir?: string;
  stdin?: string;
  timeoutMs?: number;
  signal: AbortSignal;
  killGraceMs: number;
  maxOutput: number;
  /** Streams the program's output as it comes (RuntimeContext.write); the result then holds adagio's note only. */
  write?: (chunk: Uint8Array) => void;
}

function runProcess(req: ProcessRequest): Promise<RuntimeResult> {
  return new Promise((resolve) => {
    const output = new OutputBuffer(req.maxOutput, req.write);
    // Its own process group, so a timeout also stops what the program started (e.g. a shell's children).
    const child = spawn(req.file, req.argv, {
      argv0: req.command,
      cwd: req.dir,
      env: req.env,
      stdio: [req.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: process.platform !== 'win32',
    });
    const group = new ProcessGroup(child, req.killGraceMs);
    let stopReason: string | undefined;
    let drainTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const stop = (reason: string) => {
      if (stopReason !== undefined || settled) return;
      stopReason = reason;
      group.stop();
    };
    const onAbort = () => stop(`interrupted: ${abortReason(req.signal)}`);
    req.signal.addEventListener('abort', onAbort, { once: true });
    // 0 is no limit, as for the agent's own timeout.
    const timeoutTimer = req.timeoutMs
      ? setTimeout(() => stop(`timed out after ${formatDuration(req.timeoutMs!)}`), timerDelay(req.timeoutMs))
      : undefined;

    const settle = (result: RuntimeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timeoutTimer);
      clearTimeout(drainTimer);
      req.signal.removeEventListener('abort', onAbort);
      // Nothing of the attempt may outlive it: a slot freed, or a daemon exiting, must not leave its processes behind.
      group.emptied().then(() => resolve(result));
    };

    child.stdout?.on('data', (c: Buffer) => output.add(c));
    child.stderr?.on('data', (c: Buffer) => output.add(c));
    if (child.stdin) {
      child.stdin.on('error', () => {}); // the program may exit without reading its input
      child.stdin.end(req.stdin);
    }
    child.on('error', (err: NodeJS.ErrnoException) => {
      // Spawn failures (ENOENT, EACCES) arrive here and no 'close' follows reliably.
      if (child.pid === undefined)
        settle({
          conclusion: 'ERROR',
          output: `exec: cannot start "${req.command}": ${describeSpawnError(err)}`,
        });
    });
    child.on('exit', () => {
      // A background grandchild may hold the pipes open; do not wait for it forever.
      drainTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, 1000);
      drainTimer.unref();
    });
    child.on('close', (code, sig) => {
      const meta = { [EXIT_CODE_KEY]: [code === null ? '' : String(code)] };
      if (stopReason !== undefined)
        settle({
          conclusion: 'ERROR',
          output: output.result(`exec: "${req.command}" ${stopReason}; killed`),
        });
      else if (code === 0) settle({ conclusion: 'SUCCESS', output: output.result(), metadata: meta });
      else if (code !== null) settle({ conclusion: 'FAIL', output: output.result(), metadata: meta });
      else settle({ conclusion: 'FAIL', output: output.result(`exec: "${req.command}" killed by ${sig}`) });
    });
  });
}

/** How often a group left running after its program exited is checked for having emptied. */
const GROUP_POLL_MS = 50;

/** Groups sent SIGTERM whose SIGKILL is still due: killed at once should this process exit first. */
const groupsToKill = new Set<ProcessGroup>();
let killOnExitHooked = false;

/**
 * The process group a program runs in (spawned detached: the group's id is
 * its pid), stopped as a whole: SIGTERM, then SIGKILL after the grace to
 * whatever is still in it, even when the program itself died at the SIGTERM
 * (a grandchild ignoring it would otherwise run on, its group outliving even
 * the agent's process).
 */
class ProcessGroup {
  private killTimer?: NodeJS.Timeout;
  private killed = false;
  private onKilled?: () => void;

  constructor(
    private readonly child: ChildProcess,
    private readonly graceMs: number,
  ) {}

  private signal(sig: NodeJS.Signals | 0): void {
    try {
      if (this.child.pid !== undefined && process.platform !== 'win32') process.kill(-this.child.pid, sig);
      else if (sig !== 0) this.child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** SIGTERM now, SIGKILL after the grace; once. */
  stop(): void {
    if (this.killTimer) return;
    // Not unref'd: a process with nothing else to do still waits to deliver the SIGKILL.
    this.killTimer = setTimeout(() => {
      this.signal('SIGKILL');
      this.killed = true;
      groupsToKill.delete(this);
      this.onKilled?.();
    }, this.graceMs);
    groupsToKill.add(this);
    if (!killOnExitHooked) {
      killOnExitHooked = true;
      // process.exit() (adagiod after its shutdown) drops timers; a due SIGKILL is sent now instead.
      process.on('exit', () => {
        for (const group of groupsToKill) group.signal('SIGKILL');
      });
    }
    this.signal('SIGTERM');
  }

  /** Whether any process is left in the group (windows: no groups, nothing tracked past the program). */
  private occupied(): boolean {
    if (this.child.pid === undefined || process.platform === 'win32') return false;
    try {
      process.kill(-this.child.pid, 0);
      return true;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  /** The group's SIGKILL is no longer needed: nothing is left in it. */
  private forget(): void {
    clearTimeout(this.killTimer);
    groupsToKill.delete(this);
  }

  /**
   * Once the program has exited: resolves when nothing is left in its group,
   * stopping (SIGTERM, SIGKILL after the grace) what the program left running.
   */
  emptied(): Promise<void> {
    // SIGKILL cannot be ignored: once it is sent there is nothing left to wait for (unreaped zombies may linger).
    if (this.killed) return Promise.resolve();
    if (!this.occupied()) {
      this.forget();
      return Promise.resolve();
    }
    this.stop();
    return new Promise((resolve) => {
      const poll = setInterval(() => {
        if (this.occupied()) return;
        this.forget();
        done();
      }, GROUP_POLL_MS);
      const done = () => {
        clearInterval(poll);
        resolve();
      };
      this.onKilled = done;
    });
  }
}

function describeSpawnError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such file or directory (ENOENT)';
    case 'EACCES':
      return 'permission denied (EACCES)';
    default:
      return err.code ? `${err.message} (${err.code})` : err.message;
  }
}

/**
 * Keeps the first `max` bytes (plus one, so a cut is detectable) of a stream;
 * or, given `write`, passes on as it comes the stream's first `max` bytes, the
 * cut marked as truncateOutput marks it, and keeps the last byte passed on.
 */
class OutputBuffer {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private lastByte?: number;

  constructor(
    private readonly max: number,
    private readonly write?: (chunk: Uint8Array) => void,
  ) {}

  add(chunk: Buffer): void {
    if (this.write) {
      const part = boundedAppend(this.size, chunk, this.max);
      if (part.byteLength === 0) return;
      this.size += part.byteLength;
      this.lastByte = part[part.byteLength - 1];
      this.write(part);
      return;
    }
    const room = this.max + 1 - this.size; // one byte over the cap makes truncateOutput mark the cut
    if (room <= 0) return;
    const part = chunk.byteLength <= room ? chunk : chunk.subarray(0, room);
    this.chunks.push(part);
    this.size += part.byteLength;
  }

  /** The output, truncated with a marker when over the cap, with an optional note from adagio at the end. */
  result(note?: string): Uint8Array {
    const last = this.chunks[this.chunks.length - 1];
    const lastByte = this.write ? this.lastByte : last?.[last.byteLength - 1];
    const sep = lastByte !== undefined && lastByte !== 0x0a ? '\n' : '';
    const text = note ? Buffer.from(`${sep}[adagio] ${note}\n`) : Buffer.alloc(0);
    if (this.write) return new Uint8Array(text); // the output itself was streamed
    const body = truncateOutput(Buffer.concat(this.chunks), Math.max(0, this.max - text.byteLength));
    return new Uint8Array(Buffer.concat([body, text]));
  }
}
