/**
 * Well-known attempt metadata keys and how people read them: the CLI and the
 * UI show "exit code 1", not the raw key `adagio.exec.exit_code`.
 */

/** Set by the exec runtime on every attempt whose command ran to an exit. */
export const EXIT_CODE_KEY = 'adagio.exec.exit_code';

/** Labels of well-known metadata keys, for display. */
export const METADATA_LABELS: Readonly<Record<string, string>> = {
  [EXIT_CODE_KEY]: 'exit code',
};

/** The command's exit code recorded on an attempt, or undefined (not exec, or killed by a signal). */
export function attemptExitCode(
  metadata: Readonly<Record<string, readonly string[]>> | undefined,
): string | undefined {
  const v = metadata?.[EXIT_CODE_KEY]?.[0];
  return v ? v : undefined;
}
