import { type ExplainNode, explainNode, explainRun } from '../model/explain.js';
import { attemptExitCode } from '../model/labels.js';
import type { AgentInfo, NodeState, Run, RunSummary, Stats } from '../model/types.js';
import { countNodes } from '../model/wire.js';
import { formatDuration } from '../runtimes/duration.js';
import {
  between,
  fitTable,
  formatAgo,
  formatTimestamp,
  keyValues,
  nodeConclusion,
  nodeTook,
  outcomeCounts,
  outputSummary,
  runState,
  table,
  topologicalOrder,
} from './format.js';
import { deadlineRow, timingSection } from './timing-view.js';

/** The human-readable views of runs, agents and stats (the JSON views live in json.ts). */

/**
 * `runs ls`: each run's name, status, how long it took (or has been running,
 * `…`), when it finished, its nodes as completed/total (with those running),
 * the names of the nodes that failed (rule 19: a bounded few, then a count)
 * and its labels (rule 17).
 */
export function runsTable(runs: readonly RunSummary[], now: number, columns?: number): string {
  return fitTable(
    ['ID', 'NAME', 'CREATED', 'STATUS', 'TOOK', 'FINISHED', 'NODES', 'FAILED', 'LABELS'],
    runs.map((r) => {
      const c = r.nodeCounts;
      const total = c.WAITING + c.READY + c.RUNNING + c.COMPLETED;
      const took = r.finishedAt
        ? between(r.createdAt, r.finishedAt)
        : r.status === 'COMPLETED'
          ? undefined
          : between(r.createdAt, new Date(now).toISOString());
      return [
        r.id,
        r.name || '-',
        formatTimestamp(r.createdAt),
        runState(r.status, r.conclusion),
        took === undefined ? '-' : `${formatDuration(Math.max(0, took))}${r.finishedAt ? '' : '…'}`,
        r.finishedAt ? formatTimestamp(r.finishedAt) : '-',
        `${c.COMPLETED}/${total}${c.RUNNING > 0 ? `, ${c.RUNNING} running` : ''}`,
        failedList(r),
        labelsText(r.labels),
      ];
    }),
    ['left', 'left', 'left', 'left', 'right', 'left', 'left', 'left', 'left'],
    // On a narrow terminal, what a run is and how it went matter most; --json and pipes get every column.
    { columns, drop: ['FINISHED', 'LABELS', 'CREATED'], shrink: 'NAME' },
  );
}

/** `a, b (+3 more)`; `-` when no node failed. Names are quoted when they hold spaces, commas or control characters. */
export function failedList(r: Pick<RunSummary, 'failedNodes' | 'failedNodeCount'>): string {
  if (r.failedNodeCount === 0 && r.failedNodes.length === 0) return '-';
  const names = r.failedNodes.map((n) => (/^[^\s,"\p{C}]+$/u.test(n) ? n : JSON.stringify(n)));
  const more = r.failedNodeCount - r.failedNodes.length;
  return `${names.join(', ')}${more > 0 ? ` (+${more} more)` : ''}`;
}

/** The run's identity (rule 17) as header rows, those it has. */
function identityRows(run: Run): [string, string][] {
  const rows: [string, string][] = [];
  if (run.name) rows.push(['Name', run.name]);
  if (run.workflow) rows.push(['Workflow', `${run.workflow} version ${run.workflowVersion ?? '?'}`]);
  if (run.params && Object.keys(run.params).length > 0) rows.push(['Params', labelsText(run.params)]);
  if (run.labels && Object.keys(run.labels).length > 0) rows.push(['Labels', labelsText(run.labels)]);
  if (run.requestId) rows.push(['Request id', run.requestId]);
  return rows;
}

/** Labels as `k=v,k2=v2` (sorted), or - when none. */
export function labelsText(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '-';
}

export function agentsTable(agents: readonly AgentInfo[]): string {
  return table(
    ['ID', 'HOSTNAME', 'STARTED', 'RUNTIMES'],
    agents.map((a) => [
      a.id,
      a.hostname || '-',
      formatTimestamp(a.startedAt),
      a.runtimes.map((r) => r.name).join(', ') || '-',
    ]),
  );
}

export function statsText(stats: Stats): string {
  const c = stats.nodeCounts;
  const total = c.WAITING + c.READY + c.RUNNING + c.COMPLETED;
  return table(
    ['RUNS', 'NODES', 'WAITING', 'READY', 'RUNNING', 'COMPLETED'],
    [[stats.runCount, total, c.WAITING, c.READY, c.RUNNING, c.COMPLETED].map(String)],
    ['right', 'right', 'right', 'right', 'right', 'right'],
  );
}

/** Wall time of a run: creation to the last node's finish (completed) or to now. */
export function runElapsed(run: Run, now: number): number | undefined {
  if (run.status !== 'COMPLETED') {
    const created = Date.parse(run.createdAt);
    return Number.isNaN(created) ? undefined : Math.max(0, now - created);
  }
  if (run.finishedAt) return between(run.createdAt, run.finishedAt);
  let last = '';
  for (const n of run.nodes) {
    for (const a of n.attempts) if (a.finishedAt > last) last = a.finishedAt;
    if (n.finishedAt > last) last = n.finishedAt;
  }
  return between(run.createdAt, last);
}

const OUTCOME_ORDER = ['SUCCESS', 'FAIL', 'ERROR', 'CANCELLED', 'UNREACHED', 'RUNNING', 'READY', 'WAITING'];
const OUTCOME_LABEL: Record<string, string> = {
  SUCCESS: 'succeeded',
  FAIL: 'failed',
  ERROR: 'errored',
  CANCELLED: 'cancelled',
  UNREACHED: 'unreached',
};

/**
 * `5 succeeded, 1 failed (b), 1 unreached (g)`: how the nodes stand, naming
 * (up to `nameLimit` of) the ones that did not succeed.
 */
export function nodesSummary(run: Pick<Run, 'nodes'>, nameLimit = 5): string {
  return [...outcomeCounts(run).entries()]
    .sort(([a], [b]) => OUTCOME_ORDER.indexOf(a) - OUTCOME_ORDER.indexOf(b))
    .map(([key, names]) => {
      const label = OUTCOME_LABEL[key] ?? key.toLowerCase();
      if (key === 'SUCCESS' || key === 'WAITING' || key === 'READY') return `${names.length} ${label}`;
      const shown = names.slice(0, nameLimit).join(', ');
      const more = names.length > nameLimit ? `, +${names.length - nameLimit} more` : '';
      return `${names.length} ${label} (${shown}${more})`;
    })
    .join(', ');
}

/** `7 nodes` */
export function nodeCount(n: number): string {
  return `${n} node${n === 1 ? '' : 's'}`;
}

/** One line about a run, e.g. after `start` or `cancel`. */
export function runLine(run: Run): string {
  return `run ${run.id} ${runState(run.status, run.conclusion)}: ${nodeCount(run.nodes.length)}, ${nodesSummary(run)}`;
}

/**
 * `runs inspect` in pretty form: the run's header, then one row per node in
 * topological order with its status, conclusion, attempts and timings
 * (STARTED is the latest claim's offset from the run's creation), then the
 * output of every node that did not succeed.
 */
export function runPretty(run: Run, now: number): string {
  const counts = countNodes(run.nodes);
  const elapsed = runElapsed(run, now);
  const header: [string, string][] = [
    ['Run', run.id],
    ['Created', `${formatTimestamp(run.createdAt)} (${formatAgo(run.createdAt, now)})`],
    ['Status', runState(run.status, run.conclusion)],
    ['Nodes', `${run.nodes.length}: ${nodesSummary(run)}`],
    [
      'Progress',
      `${counts.COMPLETED}/${run.nodes.length} completed, ${counts.RUNNING} running, ${counts.READY} ready, ${counts.WAITING} waiting`,
    ],
  ];
  if (elapsed !== undefined)
    header.push([run.status === 'COMPLETED' ? 'Took' : 'Running for', formatDuration(elapsed)]);
  const deadline = deadlineRow(run, now);
  if (deadline) header.push(deadline);
  header.push(...identityRows(run));
  const created = Date.parse(run.createdAt);
  const ordered = topologicalOrder(run.nodes, run.edges);
  const upstream = new Map<string, string[]>();
  for (const e of run.edges) upstream.set(e.destination, [...(upstream.get(e.destination) ?? []), e.source]);
  const rows = ordered.map((n) => {
    const started = Date.parse(n.startedAt);
    const offset = n.startedAt && !Number.isNaN(started) && !Number.isNaN(created) ? started - created : NaN;
    return [
      n.spec.name,
      n.spec.runtime,
      n.status,
      nodeConclusion(n) || '-',
      attemptsCell(n.attempts.map((a) => a.conclusion)),
      Number.isNaN(offset) ? '-' : `+${formatDuration(Math.max(0, offset))}`,
      nodeTook(n, now) || '-',
      afterCell(upstream.get(n.spec.name) ?? [], n.spec.trigger),
    ];
  });
  let out = keyValues(header);
  out += `\n${table(['NODE', 'RUNTIME', 'STATUS', 'CONCLUSION', 'ATTEMPTS', 'STARTED', 'TOOK', 'AFTER'], rows)}`;
  out += whySection(run, ordered);
  out += timingSection(ordered, now);
  const failures = ordered.filter((n) => {
    const last = n.attempts[n.attempts.length - 1];
    return last && last.conclusion !== 'SUCCESS';
  });
  if (failures.length > 0) {
    const lasts = failures.map((n) => n.attempts[n.attempts.length - 1]!);
    // The exit code column only when a command ran (exec): other runtimes have none to show.
    const exitCodes = lasts.some((a) => attemptExitCode(a.metadata) !== undefined);
    out += '\nNot successful:\n';
    out += table(
      ['NODE', 'ATTEMPT', 'CONCLUSION', ...(exitCodes ? ['EXIT CODE'] : []), 'OUTPUT'],
      failures.map((n, i) => [
        n.spec.name,
        String(n.attempts.length),
        lasts[i]!.conclusion,
        ...(exitCodes ? [attemptExitCode(lasts[i]!.metadata) ?? '-'] : []),
        outputSummary(lasts[i]!.output) || '-',
      ]),
    )
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n');
  }
  return out;
}

/** The upstream nodes, and the trigger rule when not the default (all_success): `a, b [all_done]`. */
function afterCell(upstream: readonly string[], trigger: string | undefined): string {
  const names = upstream.join(', ') || '-';
  return trigger && trigger !== 'all_success' ? `${names} [${trigger}]` : names;
}

/** `1`, or `3 (FAIL, ERROR, SUCCESS)` when a node was retried. */
function attemptsCell(conclusions: readonly string[]): string {
  if (conclusions.length <= 1) return String(conclusions.length);
  const shown = conclusions.length > 4 ? ['…', ...conclusions.slice(-3)] : conclusions;
  return `${conclusions.length} (${shown.join(', ')})`;
}

const WHY_ROWS = 20;

/** `Why:` one line per node that waits or was not run, saying what it waits for (explainNode). */
function whySection(run: Run, ordered: readonly NodeState[]): string {
  const shape = explainRun(
    run.nodes.map(toExplain),
    run.edges,
    run.conclusion === 'CANCELLED' || run.conclusion === 'TIMED_OUT',
  );
  const rows: string[][] = [];
  for (const n of ordered) {
    const why = explainNode(toExplain(n), shape);
    if (why) rows.push([n.spec.name, why]);
  }
  if (rows.length === 0) return '';
  const shown = rows.slice(0, WHY_ROWS);
  let out = '\nWhy:\n';
  out += table(['NODE', 'WHY'], shown)
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
  if (rows.length > WHY_ROWS) out += `  … and ${rows.length - WHY_ROWS} more\n`;
  return out;
}

function toExplain(n: NodeState): ExplainNode {
  return {
    name: n.spec.name,
    runtime: n.spec.runtime,
    status: n.status,
    attempts: n.attempts.map((a) => a.conclusion),
    ...(n.nextAttemptAt ? { nextAttemptAt: n.nextAttemptAt } : {}),
    trigger: n.spec.trigger,
  };
}
