import { readFileSync } from 'node:fs';
import { CommanderError } from 'commander';
import { AdagioClient } from '../client/index.js';
import { describeError, EXIT } from './errors.js';
import { type CliIO, processIO } from './io.js';
import { buildProgram, type ClientSettings, commanderExit } from './program.js';

/**
 * `adagio` entry point. runCli never exits the process and never lets an
 * error escape: whatever goes wrong becomes one `adagio: <message>` line on
 * stderr and an exit code (errors.ts). Set ADAGIO_DEBUG=1 to also get the
 * stack of an unexpected error.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIO = processIO(),
  options: { signal?: AbortSignal } = {},
): Promise<number> {
  let exitCode: number = EXIT.ok;
  let failingCommand = 'adagio';
  const program = buildProgram({
    io,
    version: packageVersion(),
    signal: options.signal,
    createClient: (s: ClientSettings) => new AdagioClient(s),
    setExitCode: (code) => {
      exitCode = code;
    },
    setFailingCommand: (path) => {
      failingCommand = path;
    },
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      const { code, message } = commanderExit(e);
      if (message) io.stderr.write(`adagio: ${message} (see '${failingCommand} --help')\n`);
      return code;
    }
    const { message, exitCode: code } = describeError(e);
    io.stderr.write(`adagio: ${message}\n`);
    if (io.env.ADAGIO_DEBUG && e instanceof Error && e.stack) io.stderr.write(`${e.stack}\n`);
    return code;
  }
}

/** The package's version, found by walking up from this file (src/cli or dist/src/cli). */
function packageVersion(): string {
  for (let dir = new URL('.', import.meta.url); dir.pathname !== '/'; dir = new URL('..', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'adagio' && pkg.version) return pkg.version;
    } catch {
      // not here; keep walking up
    }
  }
  return 'unknown';
}

/** Runs as the process: SIGINT stops a watch cleanly, and a closed pipe (`| head`) is not an error. */
export async function main(): Promise<void> {
  const controller = new AbortController();
  const onSigint = () => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted);
    controller.abort();
  };
  process.on('SIGINT', onSigint);
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(EXIT.ok);
    process.stderr.write(`adagio: cannot write the output: ${e.message}\n`);
    process.exit(EXIT.failed);
  });
  const code = await runCli(process.argv.slice(2), processIO(), { signal: controller.signal });
  process.off('SIGINT', onSigint);
  // Exit explicitly: an idle keep-alive connection of the client must not hold the process open.
  process.stdout.write('', () => process.exit(code));
}
