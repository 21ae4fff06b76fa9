/**
 * What the CLI touches of its process: output streams, stdin, environment and
 * clock. Passed in rather than read from `process` so commands can be driven
 * from tests and so every write goes through one place.
 */
export interface OutputStream {
  write(text: string): unknown;
  /** True on a terminal: live progress redraws and colour are used only then. */
  isTTY?: boolean;
  columns?: number;
}

export interface CliIO {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin: AsyncIterable<Uint8Array | string> & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  now(): number;
}

export function processIO(): CliIO {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    now: Date.now,
  };
}
