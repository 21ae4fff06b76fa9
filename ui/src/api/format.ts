import {
  Attempt_Conclusion,
  type MetadataValues,
  type Node,
  Node_Status,
  type Run,
  Run_Conclusion,
  Run_Status,
} from '../../../src/gen/adagio/v1/adagio_pb.js';

/**
 * What a node looks like to a user: its status, and once completed, how its
 * last attempt ended ("skipped" when it completed without one: unreached or
 * cancelled before it started). Each state has a colour in styles.css.
 */
export type NodeLook =
  | 'waiting'
  | 'ready'
  | 'running'
  | 'orphaned'
  | 'success'
  | 'fail'
  | 'error'
  | 'cancelled'
  | 'skipped';

/** How each look is worded: on the nodes themselves and in the run header's counts ("3 succeeded", "1 not run"). */
export const LOOK_LABEL: Record<NodeLook, string> = {
  waiting: 'waiting',
  ready: 'ready',
  running: 'running',
  orphaned: 'orphaned',
  success: 'succeeded',
  fail: 'failed',
  error: 'error',
  cancelled: 'cancelled',
  skipped: 'not run',
};

export function nodeLook(node: Node): NodeLook {
  switch (node.status) {
    case Node_Status.READY:
      return 'ready';
    case Node_Status.RUNNING:
      return node.claim?.orphaned ? 'orphaned' : 'running';
    case Node_Status.COMPLETED: {
      const last = node.attempts[node.attempts.length - 1];
      if (!last) return 'skipped';
      return conclusionLook(last.conclusion);
    }
    default:
      return 'waiting';
  }
}

export function conclusionLook(c: Attempt_Conclusion): NodeLook {
  switch (c) {
    case Attempt_Conclusion.SUCCESS:
      return 'success';
    case Attempt_Conclusion.FAIL:
      return 'fail';
    case Attempt_Conclusion.ERROR:
      return 'error';
    case Attempt_Conclusion.CANCELLED:
      return 'cancelled';
    default:
      return 'skipped';
  }
}

/** A run's single word: its status while going, its conclusion once completed. */
export type RunLook = 'waiting' | 'running' | 'success' | 'fail' | 'cancelled' | 'timed-out' | 'completed';

export function runLook(status: Run_Status, conclusion: Run_Conclusion): RunLook {
  if (status === Run_Status.RUNNING) return 'running';
  if (status !== Run_Status.COMPLETED) return 'waiting';
  if (conclusion === Run_Conclusion.SUCCESS) return 'success';
  if (conclusion === Run_Conclusion.FAIL) return 'fail';
  if (conclusion === Run_Conclusion.CANCELLED) return 'cancelled';
  if (conclusion === Run_Conclusion.TIMED_OUT) return 'timed-out';
  return 'completed';
}

export function isRunDone(run: Pick<Run, 'status'>): boolean {
  return run.status === Run_Status.COMPLETED;
}

export function nodeStatusName(s: Node_Status): string {
  return Node_Status[s] ?? String(s);
}

export function conclusionName(c: Attempt_Conclusion): string {
  return Attempt_Conclusion[c] ?? String(c);
}

const decoder = new TextDecoder('utf-8', { fatal: false });

/** Output bytes as text; invalid UTF-8 becomes U+FFFD rather than failing. Rendered as text, never as HTML. */
export function bytesToText(b: Uint8Array | undefined): string {
  return b && b.byteLength > 0 ? decoder.decode(b) : '';
}

/** RFC 3339 → local "YYYY-MM-DD HH:MM:SS"; empty stays empty. */
export function formatTime(rfc3339: string): string {
  if (!rfc3339) return '';
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "1.2 s", "3 min 4 s"; empty when either end is missing. */
export function formatDuration(fromRfc3339: string, toRfc3339: string): string {
  if (!fromRfc3339 || !toRfc3339) return '';
  const ms = new Date(toRfc3339).getTime() - new Date(fromRfc3339).getTime();
  if (!Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const min = Math.floor(ms / 60_000);
  if (min < 60) return `${min} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}

/** A span in milliseconds, worded as formatDuration words it ("0 ms" for nothing). */
export function formatMs(ms: number): string {
  return formatDuration(new Date(0).toISOString(), new Date(Math.max(0, ms)).toISOString()) || '0 ms';
}

/** A past time, as "5s ago", "3d ago"; a future time counts as now (see formatIn). */
export function formatAgo(rfc3339: string, now = Date.now()): string {
  const t = new Date(rfc3339).getTime();
  if (!rfc3339 || Number.isNaN(t)) return '';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** A time still to come, as "in 25s", "in 4m", "in 3h", "in 33d"; "now" once it is due. Empty for no or a bad time. */
export function formatIn(rfc3339: string, now = Date.now()): string {
  const t = new Date(rfc3339).getTime();
  if (!rfc3339 || Number.isNaN(t)) return '';
  const s = Math.round((t - now) / 1000);
  if (s <= 0) return 'now';
  if (s < 60) return `in ${s}s`;
  if (s < 3600) return `in ${Math.floor(s / 60)}m`;
  if (s < 86_400) return `in ${Math.floor(s / 3600)}h`;
  return `in ${Math.floor(s / 86_400)}d`;
}

export interface SplitMetadata {
  /** Runtime arguments: `adagio.arguments.<runtime>.<arg>` (or the older `adagio.runtime.…`). */
  args: [string, string[]][];
  /** Arguments fed from upstream outputs: `adagio.inputs.<runtime>.<arg>` = node name. */
  inputs: [string, string[]][];
  other: [string, string[]][];
}

/** Sorts a node's metadata into arguments, declared inputs and everything else, for display. */
export function splitMetadata(runtime: string, metadata: { [k: string]: MetadataValues }): SplitMetadata {
  const out: SplitMetadata = { args: [], inputs: [], other: [] };
  const argPrefixes = [`adagio.arguments.${runtime}.`, `adagio.runtime.${runtime}.`];
  const inputPrefix = `adagio.inputs.${runtime}.`;
  for (const key of Object.keys(metadata).sort()) {
    const values = metadata[key]?.values ?? [];
    const argPrefix = argPrefixes.find((p) => key.startsWith(p));
    if (argPrefix) out.args.push([key.slice(argPrefix.length), values]);
    else if (key.startsWith(inputPrefix)) out.inputs.push([key.slice(inputPrefix.length), values]);
    else out.other.push([key, values]);
  }
  return out;
}
