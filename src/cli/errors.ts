import { isAdagioError } from '../protocol/errors.js';

/**
 * Exit codes, documented in docs/cli.md. Scripts can tell a run that failed
 * (1) from a command they got wrong (2) and from a daemon that could not
 * serve them (3).
 */
export const EXIT = {
  ok: 0,
  /** The watched run did not succeed, or an unexpected error. */
  failed: 1,
  /** Bad flags or arguments, an unreadable, malformed or invalid graph. */
  usage: 2,
  /** The daemon refused or could not serve the request: unknown run, unreachable, unauthorised. */
  api: 3,
  /** Interrupted by SIGINT while watching. */
  interrupted: 130,
} as const;

/** An error the CLI itself detects; its message is printed as is. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.usage,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The one line printed for an error (without the `adagio: ` prefix) and the exit code it maps to. */
export function describeError(e: unknown): { message: string; exitCode: number } {
  if (e instanceof CliError) return { message: oneLine(e.message), exitCode: e.exitCode };
  if (isAdagioError(e)) {
    const exitCode = e.code === 'invalid_argument' || e.code === 'too_large' ? EXIT.usage : EXIT.api;
    // Unreachable: most often the wrong address, so say how to give another.
    const hint =
      e.code === 'unavailable' && e.message.startsWith('cannot reach')
        ? '; another address with --address or ADAGIO_ADDRESS'
        : '';
    return { message: oneLine(e.message) + hint, exitCode };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { message: oneLine(message || 'unexpected error'), exitCode: EXIT.failed };
}

/** Error messages end up on one terminal line; a multi-line message from a lower layer is folded. */
export function oneLine(message: string): string {
  return message
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter(Boolean)
    .join(' ');
}
