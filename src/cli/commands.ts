import { unservedRuntimeWarnings } from '../model/explain.js';
import { ulidTime } from '../model/ids.js';
import type { Schedule, ScheduleInput, ScheduleView } from '../model/schedules.js';
import type { AgentInfo, GraphSpec, Run, Stats } from '../model/types.js';
import type { WorkflowDefinition, WorkflowInput, WorkflowSummary } from '../model/workflows.js';
import type { ListRunsQuery, RunPage, StartOptions, WatchEvent } from '../protocol/repository.js';
import { runDot } from './dot.js';
import { CliError, EXIT } from './errors.js';
import { topologicalOrder } from './format.js';
import { readGraph } from './input.js';
import type { CliIO } from './io.js';
import { agentsJson, runJson, runPageJson, statsJson } from './json.js';
import { runTimeline } from './timeline.js';
import { agentsTable, runLine, runPretty, runsTable, statsText } from './views.js';
import { watchRun } from './watch.js';

/**
 * The commands' actions, independent of argument parsing (program.ts). Each
 * returns the process exit code; errors are thrown and printed by main.ts.
 */

/** What the CLI needs of the API: the typed client (src/client) satisfies it. */
export interface ControlPlane {
  readonly address: string;
  stats(): Promise<Stats>;
  start(spec: GraphSpec | undefined, options?: StartOptions): Promise<Run>;
  listRuns(query?: ListRunsQuery): Promise<RunPage>;
  inspect(id: string): Promise<Run>;
  cancel(id: string): Promise<Run>;
  retry(id: string, nodes?: string[]): Promise<Run>;
  rerun(id: string): Promise<Run>;
  listAgents(): Promise<AgentInfo[]>;
  watch(id: string, options?: { signal?: AbortSignal }): AsyncIterable<WatchEvent>;
  attemptOutput(runId: string, node: string, attempt: number): Promise<Uint8Array>;
  putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition>;
  getWorkflow(name: string, version?: number): Promise<WorkflowDefinition>;
  listWorkflows(): Promise<WorkflowSummary[]>;
  listWorkflowVersions(name: string): Promise<WorkflowDefinition[]>;
  deleteWorkflow(name: string): Promise<void>;
  putSchedule(name: string, input: ScheduleInput): Promise<Schedule>;
  getSchedule(name: string): Promise<ScheduleView>;
  listSchedules(): Promise<Schedule[]>;
  deleteSchedule(name: string): Promise<void>;
  pauseSchedule(name: string): Promise<Schedule>;
  resumeSchedule(name: string): Promise<Schedule>;
  triggerSchedule(name: string): Promise<Run>;
  backfillSchedule(name: string, from: string, to: string): Promise<Run[]>;
}

export interface Context {
  io: CliIO;
  client(): ControlPlane;
  /** Aborted on SIGINT, so a watch can stop cleanly. */
  signal?: AbortSignal;
}

export async function runsList(
  ctx: Context,
  opts: { query: ListRunsQuery; all: boolean; json: boolean },
): Promise<number> {
  const client = ctx.client();
  let page = await client.listRuns(opts.query);
  if (opts.all) {
    // Follow cursors to the end, then print once: a table needs all its rows to size its columns.
    const runs = [...page.runs];
    while (page.nextCursor) {
      page = await client.listRuns({ ...opts.query, cursor: page.nextCursor });
      runs.push(...page.runs);
    }
    page = { runs };
  }
  if (opts.json) {
    ctx.io.stdout.write(runPageJson(page));
    return EXIT.ok;
  }
  if (page.runs.length === 0) {
    ctx.io.stderr.write('adagio: no runs match\n');
    return EXIT.ok;
  }
  const out = ctx.io.stdout;
  ctx.io.stdout.write(runsTable(page.runs, ctx.io.now(), out.isTTY ? out.columns : undefined));
  if (page.nextCursor)
    ctx.io.stderr.write(
      `adagio: more runs match; next page: --cursor ${page.nextCursor} (or --all, or a larger --limit)\n`,
    );
  return EXIT.ok;
}

/** Starts the graph in `file` (or stdin), or with `start.workflow` that workflow (then no file). */
export async function runsStart(
  ctx: Context,
  file: string | undefined,
  opts: {
    quiet: boolean;
    watch: boolean;
    json: boolean;
    lines: boolean;
    noOutput?: boolean;
    start?: StartOptions;
  },
): Promise<number> {
  const start = opts.start ?? {};
  if (start.workflow !== undefined && file !== undefined)
    throw new CliError('give a graph FILE or --workflow NAME, not both');
  if (start.workflow === undefined && (start.params || start.version !== undefined))
    throw new CliError('-p/--param and --workflow-version need --workflow NAME');
  // The API cannot tell an empty request id from none: every repeat would start a new run.
  if (start.requestId === '') throw new CliError('--request-id must not be empty');
  const spec = start.workflow !== undefined ? undefined : await readGraph(file, ctx.io);
  const client = ctx.client();
  const run = await client.start(spec, start);
  if (opts.quiet) ctx.io.stdout.write(`${run.id}\n`);
  else if (opts.json) ctx.io.stdout.write(runJson(run));
  else ctx.io.stdout.write(`started ${runLine(run)}\n`);
  // Said on stderr, so -q and --json output stay as they are.
  for (const w of unservedRuntimeWarnings(
    run.nodes.map((n) => n.spec),
    await client.listAgents(),
  ))
    ctx.io.stderr.write(`adagio: warning: ${w}\n`);
  if (!opts.watch) return EXIT.ok;
  return watchRun(client, run.id, ctx.io, {
    quiet: opts.quiet || opts.json,
    lines: opts.lines,
    noOutput: opts.noOutput,
    signal: ctx.signal,
  });
}

export type InspectFormat = 'pretty' | 'json' | 'dot' | 'timeline';

export async function runsInspect(
  ctx: Context,
  id: string,
  opts: { output: InspectFormat },
): Promise<number> {
  const client = ctx.client();
  const run = await client.inspect(checkId(id));
  // The API leaves outputs out past a read budget: fetch those this view shows (json shows every attempt's).
  for (const n of run.nodes)
    for (const [i, a] of n.attempts.entries())
      if (a.omittedOutputBytes !== undefined && (opts.output === 'json' || i === n.attempts.length - 1)) {
        a.output = await client.attemptOutput(run.id, n.spec.name, i + 1);
        delete a.omittedOutputBytes;
      }
  const out =
    opts.output === 'json'
      ? runJson(run)
      : opts.output === 'timeline'
        ? runTimeline(run, topologicalOrder(run.nodes, run.edges), ctx.io.now())
        : opts.output === 'dot'
          ? runDot(run)
          : runPretty(run, ctx.io.now());
  ctx.io.stdout.write(out);
  return EXIT.ok;
}

export async function runsCancel(
  ctx: Context,
  id: string,
  opts: { json: boolean; quiet: boolean },
): Promise<number> {
  const client = ctx.client();
  const runId = checkId(id);
  // Cancel is idempotent and answers the run either way: whether it had already
  // completed is asked first, from the cheap list summary rather than the whole run.
  const before = await completedBefore(client, runId);
  const run = await client.cancel(runId);
  if (opts.json) ctx.io.stdout.write(runJson(run));
  if (run.conclusion !== 'CANCELLED') {
    // Nothing was cancelled: the run had ended on its own. Exit 1, so `cancel || …` notices.
    if (!opts.quiet && !opts.json)
      ctx.io.stderr.write(`adagio: nothing to cancel: ${runLine(run)} (it had already completed)\n`);
    return EXIT.failed;
  }
  if (!opts.quiet && !opts.json)
    ctx.io.stdout.write(before ? `already cancelled: ${runLine(run)}\n` : `cancelled ${runLine(run)}\n`);
  return EXIT.ok;
}

/** Whether the run had completed before this cancel: its list summary, found by the time in its id (a ULID). */
async function completedBefore(client: ControlPlane, runId: string): Promise<boolean> {
  const ms = ulidTime(runId);
  if (ms === undefined) return false; // not an id adagio makes: cancel says not found
  const page = await client.listRuns({ since: ms, until: ms + 1, limit: 1000 });
  return page.runs.find((r) => r.id === runId)?.status === 'COMPLETED';
}

export async function runsRetry(
  ctx: Context,
  id: string,
  opts: { nodes: string[]; json: boolean; quiet: boolean; watch: boolean; lines: boolean },
): Promise<number> {
  const client = ctx.client();
  const run = await client.retry(checkId(id), opts.nodes);
  if (opts.json) ctx.io.stdout.write(runJson(run));
  else if (!opts.quiet) ctx.io.stdout.write(`retried ${runLine(run)}\n`);
  if (opts.watch) return runsWatch(ctx, run.id, { quiet: opts.quiet || opts.json, lines: opts.lines });
  return EXIT.ok;
}

export async function runsRerun(
  ctx: Context,
  id: string,
  opts: { json: boolean; quiet: boolean; watch: boolean; lines: boolean },
): Promise<number> {
  const client = ctx.client();
  const run = await client.rerun(checkId(id));
  if (opts.json) ctx.io.stdout.write(runJson(run));
  else if (opts.quiet) ctx.io.stdout.write(`${run.id}\n`);
  else ctx.io.stdout.write(`started ${runLine(run)} (a rerun of ${id})\n`);
  if (opts.watch) return runsWatch(ctx, run.id, { quiet: opts.quiet || opts.json, lines: opts.lines });
  return EXIT.ok;
}

export async function runsWatch(
  ctx: Context,
  id: string,
  opts: { quiet: boolean; lines: boolean; noOutput?: boolean },
): Promise<number> {
  return watchRun(ctx.client(), checkId(id), ctx.io, { ...opts, signal: ctx.signal });
}

export async function agentsList(ctx: Context, opts: { json: boolean }): Promise<number> {
  const agents = await ctx.client().listAgents();
  if (opts.json) ctx.io.stdout.write(agentsJson(agents));
  else if (agents.length === 0) ctx.io.stderr.write('adagio: no agents registered\n');
  else ctx.io.stdout.write(agentsTable(agents));
  return EXIT.ok;
}

export async function stats(ctx: Context, opts: { json: boolean }): Promise<number> {
  const s = await ctx.client().stats();
  ctx.io.stdout.write(opts.json ? statsJson(s) : statsText(s));
  return EXIT.ok;
}

/** Run ids go into URL paths: refuse the obviously wrong before asking the daemon. */
export function checkId(id: string): string {
  const trimmed = id.trim();
  if (!trimmed) throw new CliError('a run id is required (see `adagio runs ls`)');
  return trimmed;
}
