import { backoffText } from '../model/explain.js';
import type { NodeState, Run } from '../model/types.js';
import { formatDuration } from '../runtimes/duration.js';
import { formatTimestamp, table } from './format.js';

/**
 * `runs inspect`'s view of the time rules: when the run's deadline passes
 * (rule 13), and per node its timeout (rule 11), retry backoffs and when a
 * delayed retry is due (rule 5). Empty when the run uses none of them.
 */

/** `in 4m`, `12s ago`: a time relative to `now`. */
function relative(rfc3339: string, now: number): string {
  const d = Date.parse(rfc3339) - now;
  if (Number.isNaN(d)) return '';
  return d >= 0 ? `in ${formatDuration(d)}` : `${formatDuration(-d)} ago`;
}

/** The header row for the run's deadline, or undefined without one. */
export function deadlineRow(run: Run, now: number): [string, string] | undefined {
  if (!run.deadlineAt) return undefined;
  const note = run.conclusion === 'TIMED_OUT' ? 'passed: the run timed out' : relative(run.deadlineAt, now);
  return ['Deadline', `${formatTimestamp(run.deadlineAt)} (${note})`];
}

function retryCell(n: NodeState): string {
  const parts: string[] = [];
  for (const k of ['fail', 'error'] as const) {
    const r = n.spec.retry[k];
    if (!r) continue;
    parts.push(`${k} ×${r.maxAttempts}${r.backoff ? ` after ${backoffText(r.backoff)}` : ''}`);
  }
  return parts.join('; ') || '-';
}

/** `Timing:` one row per node with a timeout, a backoff or a retry due; empty when none has. */
export function timingSection(nodes: readonly NodeState[], now: number): string {
  const rows = nodes
    .filter((n) => n.spec.timeout || n.nextAttemptAt || Object.values(n.spec.retry).some((r) => r?.backoff))
    .map((n) => [
      n.spec.name,
      n.spec.timeout ?? '-',
      retryCell(n),
      n.nextAttemptAt ? `${formatTimestamp(n.nextAttemptAt)} (${relative(n.nextAttemptAt, now)})` : '-',
    ]);
  if (rows.length === 0) return '';
  return `\nTiming:\n${table(['NODE', 'TIMEOUT', 'RETRY', 'NEXT ATTEMPT DUE'], rows)
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n')}`;
}
