import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { runCli } from '../../src/cli/main.js';

/** Drives the real `adagio` binary as a subprocess, the way users and scripts run it. */

export const ADAGIO = fileURLToPath(new URL('../../bin/adagio.js', import.meta.url));
export const SEVEN_NODE = fileURLToPath(new URL('../../examples/workflows/seven-node.json', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Written to stdin, which is then closed; stdin is empty otherwise. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** Generous: a loaded 2-core CI machine takes seconds to start node with tsx. */
  timeoutMs?: number;
  /** Called with stdout so far after each chunk: lets a test act once the command got somewhere. */
  onStdout?: (stdout: string) => void;
}

export function cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  // The test's own settings must not leak into a case that sets none.
  for (const key of ['ADAGIO_ADDRESS', 'ADAGIO_TOKEN', 'ADAGIO_DEBUG'])
    if (!options.env || !(key in options.env)) delete env[key];
  const child = spawn(process.execPath, [ADAGIO, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    options.onStdout?.(stdout);
  });
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    stderr += s;
  });
  child.stdin.end(options.input ?? '');
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`adagio ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * The same CLI program run inside the test process (no node + tsx start-up,
 * which costs about a second of CPU per call): for the many variations of a
 * case, while each case is also driven through the binary at least once.
 */
export async function cliInProcess(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const out = { stdout: '', stderr: '' };
  const input = options.input ?? '';
  const code = await runCli(args, {
    stdout: { write: (s: string) => (out.stdout += s) },
    stderr: { write: (s: string) => (out.stderr += s) },
    stdin: (async function* () {
      if (input) yield input;
    })(),
    env: { ...options.env },
    now: Date.now,
  });
  return { code, ...out };
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One `adagio: …` line on stderr and nothing that looks like a stack trace. */
export function oneErrorLine(stderr: string): string {
  const lines = stderr.split('\n').filter(Boolean);
  if (lines.length !== 1 || !lines[0]!.startsWith('adagio: ') || /\n\s+at /.test(stderr))
    throw new Error(`expected one "adagio: …" line on stderr, got:\n${stderr}`);
  return lines[0]!;
}

/** Polls until `check` returns a value (not undefined), for states reached asynchronously. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
