/**
 * Warnings the API answered a Start with (runtimes no live agent serves),
 * kept for the run page the start page navigates to. In memory: they are
 * about the moment of the start, so a reload need not show them again (the
 * node panel's "why" says the same about a node while it waits).
 */
const byRun = new Map<string, string[]>();

export function rememberStartWarnings(runId: string, warnings: readonly string[]): void {
  if (warnings.length > 0) byRun.set(runId, [...warnings]);
}

export function startWarningsOf(runId: string): readonly string[] {
  return byRun.get(runId) ?? [];
}

export function forgetStartWarnings(runId: string): void {
  byRun.delete(runId);
}
