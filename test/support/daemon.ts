import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * A real `adagiod` process for integration tests, on a free loopback port.
 * Resolves once it logs where it listens; `stop()` sends SIGTERM and waits
 * for the exit (SIGKILL after `killAfterMs`), returning the exit code.
 */
export interface RunningDaemon {
  address: string;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  logs(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves with the exit code when the process ends on its own. */
  exited: Promise<number | null>;
}

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const ADAGIOD = fileURLToPath(new URL('../../bin/adagiod.js', import.meta.url));

export function startDaemon(
  args: string[] = [],
  options: {
    env?: NodeJS.ProcessEnv;
    startTimeoutMs?: number;
    killAfterMs?: number;
    expectListen?: boolean;
  } = {},
): Promise<RunningDaemon> {
  const hasListen = args.some((a) => /^--?listen(=|$)/.test(a));
  const role = args[0];
  const listens = options.expectListen ?? role !== 'agent';
  const full = listens && !hasListen ? [...args, '--listen', '127.0.0.1:0'] : args;
  const child = spawn(process.execPath, [ADAGIOD, ...full], {
    cwd: REPO_ROOT,
    env: { ...process.env, ADAGIOD_LOG_LEVEL: process.env.ADAGIOD_LOG_LEVEL ?? 'info', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`adagiod did not start within ${options.startTimeoutMs ?? 30_000} ms:\n${stderr}`));
    }, options.startTimeoutMs ?? 30_000);
    const ready = (address: string) => {
      clearTimeout(timer);
      resolve({
        address,
        child,
        exited,
        logs: () => stderr,
        stop: async (signal = 'SIGTERM') => {
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          child.kill(signal);
          const kill = setTimeout(() => child.kill('SIGKILL'), options.killAfterMs ?? 20_000);
          const code = await exited;
          clearTimeout(kill);
          return code;
        },
      });
    };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      const m = /"msg":"listening".*?"address":"([^"]+)"/.exec(stderr);
      if (m) ready(m[1]!);
      else if (!listens && /"msg":"agents started"/.test(stderr)) ready('');
    });
    child.stdout!.resume();
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`adagiod exited with ${code} before it was ready:\n${stderr}`));
    });
  });
}
