import type { NodeState, Run, RunConclusion, RunStatus } from '../model/types.js';
import { formatDuration } from '../runtimes/duration.js';

/** Text building blocks shared by the commands: tables, times, node conclusions. */

export type Align = 'left' | 'right';

/**
 * A plain-text table: a header row, columns two spaces apart, no trailing
 * spaces. Plain so that it greps and pipes well; `--json` is for machines.
 */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], align: Align[] = []) {
  const widths = headers.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ''))));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => {
        const pad = ' '.repeat(Math.max(0, widths[i]! - width(cell)));
        return align[i] === 'right' ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

/**
 * A table that fits a terminal `columns` wide: while it is wider, drops the columns named in `drop` (in that
 * order), then shortens the `shrink` column's cells with `…` (to no fewer than 4 characters). Without
 * `columns` (not a terminal: a pipe, a file) it is the whole table, so scripts see every column.
 */
export function fitTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align: Align[],
  fit: { columns?: number; drop: readonly string[]; shrink: string },
): string {
  const full = table(headers, rows, align);
  const max = fit.columns;
  if (!max || widest(full) <= max) return full;
  let keep = headers.map((_, i) => i);
  const pick = () =>
    [
      keep.map((i) => headers[i]!),
      rows.map((r) => keep.map((i) => r[i] ?? '')),
      keep.map((i) => align[i]!),
    ] as const;
  for (const name of fit.drop) {
    keep = keep.filter((i) => headers[i] !== name);
    const out = table(...pick());
    if (widest(out) <= max) return out;
  }
  const [h, r, a] = pick();
  const s = h.indexOf(fit.shrink);
  if (s < 0) return table(h, r, a);
  const over = widest(table(h, r, a)) - max;
  const current = Math.max(width(h[s]!), ...r.map((row) => width(row[s]!)));
  const room = Math.max(4, current - over);
  const cut = (cell: string) => (width(cell) <= room ? cell : `${[...cell].slice(0, room - 1).join('')}…`);
  return table(
    h,
    r.map((row) => row.map((cell, i) => (i === s ? cut(cell) : cell))),
    a,
  );
}

function widest(text: string): number {
  return Math.max(0, ...text.split('\n').map(width));
}

/** `Key   value` lines with the values aligned. */
export function keyValues(pairs: readonly (readonly [string, string])[]): string {
  const w = Math.max(0, ...pairs.map(([k]) => width(k)));
  return `${pairs.map(([k, v]) => `${k}${' '.repeat(w - width(k))}  ${v}`.trimEnd()).join('\n')}\n`;
}

/** Display width, counting each code point as one column (names are usually ASCII). */
function width(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** `2025-06-01T10:00:00Z`: RFC 3339 in UTC to the second; `-` for an empty or bad time. */
export function formatTimestamp(rfc3339: string): string {
  const ms = Date.parse(rfc3339);
  if (!rfc3339 || Number.isNaN(ms)) return '-';
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `3m ago`, `just now`: how long before `now` a time was. */
export function formatAgo(rfc3339: string, now: number): string {
  const ms = Date.parse(rfc3339);
  if (Number.isNaN(ms)) return '';
  const d = now - ms;
  if (d < 1000) return 'just now';
  if (d < 60_000) return `${Math.floor(d / 1000)}s ago`;
  if (d < 3_600_000) return `${Math.floor(d / 60_000)}m ago`;
  if (d < 86_400_000) return `${Math.floor(d / 3_600_000)}h ago`;
  return `${Math.floor(d / 86_400_000)}d ago`;
}

/** Milliseconds between two RFC 3339 times, or undefined when either is missing. */
export function between(from: string, to: string): number | undefined {
  const a = Date.parse(from);
  const b = Date.parse(to);
  if (!from || !to || Number.isNaN(a) || Number.isNaN(b)) return undefined;
  return Math.max(0, b - a);
}

/** The status column of a run: `RUNNING`, or `COMPLETED` followed by how it ended. */
export function runState(status: RunStatus, conclusion?: RunConclusion): string {
  return status === 'COMPLETED' && conclusion ? `${status} ${conclusion}` : status;
}

/**
 * How a node ended, from its last attempt: SUCCESS, FAIL, ERROR, CANCELLED,
 * or UNREACHED for a completed node that never ran (an upstream node failed,
 * or the run was cancelled before it started); empty while not completed.
 */
export function nodeConclusion(node: NodeState): string {
  const last = node.attempts[node.attempts.length - 1];
  if (node.status !== 'COMPLETED') return '';
  return last ? last.conclusion : 'UNREACHED';
}

/** How long the node's latest attempt took, or has been running for. */
export function nodeTook(node: NodeState, now: number): string {
  const last = node.attempts[node.attempts.length - 1];
  if (node.status === 'RUNNING' && node.startedAt) {
    const ms = Date.parse(node.startedAt);
    return Number.isNaN(ms) ? '' : `${formatDuration(Math.max(0, now - ms))}…`;
  }
  if (!last) return '';
  const ms = between(last.startedAt, last.finishedAt);
  return ms === undefined ? '' : formatDuration(ms);
}

/** Nodes in a topological order (ties kept in spec order), so a listing reads from roots to leaves. */
export function topologicalOrder<T extends { spec: { name: string } }>(
  nodes: readonly T[],
  edges: readonly { source: string; destination: string }[],
): T[] {
  const byName = new Map(nodes.map((n) => [n.spec.name, n]));
  const pending = new Map(nodes.map((n) => [n.spec.name, 0]));
  const out = new Map<string, string[]>();
  for (const e of edges) {
    if (!byName.has(e.source) || !byName.has(e.destination)) continue;
    pending.set(e.destination, pending.get(e.destination)! + 1);
    const list = out.get(e.source);
    if (list) list.push(e.destination);
    else out.set(e.source, [e.destination]);
  }
  // Kahn's algorithm with a FIFO seeded in spec order: linear, and stable enough to read.
  const order: T[] = [];
  const queue = nodes.filter((n) => pending.get(n.spec.name) === 0);
  const done = new Set<string>();
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i]!;
    done.add(n.spec.name);
    order.push(n);
    for (const d of out.get(n.spec.name) ?? []) {
      const left = pending.get(d)! - 1;
      pending.set(d, left);
      if (left === 0) queue.push(byName.get(d)!);
    }
  }
  // A cycle cannot be stored (rule 1), but never drop nodes if one shows up.
  for (const n of nodes) if (!done.has(n.spec.name)) order.push(n);
  return order;
}

/** Counts of how the run's nodes ended, for summaries. */
export function outcomeCounts(run: Pick<Run, 'nodes'>): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const n of run.nodes) {
    const key = nodeConclusion(n) || n.status;
    const list = groups.get(key);
    if (list) list.push(n.spec.name);
    else groups.set(key, [n.spec.name]);
  }
  return groups;
}

/** First line of an attempt's output, shortened for a one-line listing. */
export function outputSummary(output: Uint8Array, max = 100): string {
  const text = new TextDecoder().decode(output).trim();
  const first = text.split(/\r?\n/, 1)[0] ?? '';
  const more = first.length < text.length;
  if (first.length > max) return `${first.slice(0, max - 1)}…`;
  return more ? `${first} …` : first;
}
