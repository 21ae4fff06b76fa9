import { Command, CommanderError, Option } from 'commander';
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT } from '../protocol/repository.js';
import {
  agentsList,
  type Context,
  type ControlPlane,
  checkId,
  type InspectFormat,
  runsCancel,
  runsInspect,
  runsList,
  runsRerun,
  runsRetry,
  runsStart,
  runsWatch,
  stats,
} from './commands.js';
import { EXIT, oneLine } from './errors.js';
import {
  DEFAULT_ADDRESS,
  parseAttempt,
  parseLimit,
  parseTimeFlag,
  parseTimeout,
  resolveAddress,
} from './input.js';
import type { CliIO } from './io.js';
import { runsLogs } from './logs.js';
import {
  schedulesBackfill,
  schedulesList,
  schedulesPause,
  schedulesPut,
  schedulesRemove,
  schedulesShow,
  schedulesTrigger,
} from './schedules.js';
import {
  collectPairs,
  parseConclusion,
  parseStatus,
  parseVersion,
  workflowsList,
  workflowsPut,
  workflowsRemove,
  workflowsShow,
} from './workflows.js';

/**
 * The command tree (commander). Parsing only: each action resolves its
 * options and hands over to commands.ts. Usage errors surface as
 * CommanderError, which main.ts prints as one `adagio: …` line.
 */

export interface GlobalOptions {
  address?: string;
  token?: string;
  timeout?: string;
}

export interface ClientSettings {
  address: string;
  token?: string;
  timeoutMs?: number;
}

export interface ProgramDeps {
  io: CliIO;
  createClient(settings: ClientSettings): ControlPlane;
  version: string;
  signal?: AbortSignal;
  /** Receives each action's exit code. */
  setExitCode(code: number): void;
  /** Told which command a usage error is about (e.g. `adagio runs ls`), for the help hint. */
  setFailingCommand?(path: string): void;
}

export function buildProgram(deps: ProgramDeps): Command {
  const { io } = deps;
  let client: ControlPlane | undefined;
  const context = (cmd: Command): Context => ({
    io,
    signal: deps.signal,
    client() {
      if (client) return client;
      const g = cmd.optsWithGlobals<GlobalOptions>();
      const token = g.token ?? io.env.ADAGIO_TOKEN;
      client = deps.createClient({
        address: resolveAddress(g.address, io.env),
        token: token || undefined,
        timeoutMs: g.timeout === undefined ? undefined : parseTimeout(g.timeout),
      });
      return client;
    },
  });
  const act =
    <A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<number>) =>
    async (...args: unknown[]) => {
      const cmd = args[args.length - 1] as Command;
      deps.setExitCode(await fn(context(cmd), ...(args.slice(0, -1) as A)));
    };

  const program = new Command('adagio')
    .description(
      'Command-line client for the Adagio control plane (adagiod): start, follow and inspect workflow runs.',
    )
    .version(deps.version, '-V, --version', 'print the version')
    .option('--address <url>', `control plane address (env ADAGIO_ADDRESS; default ${DEFAULT_ADDRESS})`)
    .option('--token <token>', 'bearer token for a daemon started with -api-token (env ADAGIO_TOKEN)')
    .option('--timeout <duration>', 'give up on a request after this long, e.g. 10s (watch streams excepted)')
    .configureHelp({ showGlobalOptions: true })
    .addHelpText(
      'after',
      `
Examples:
  adagio runs start examples/workflows/seven-node.json --watch
  cat graph.json | adagio runs start -q
  adagio runs ls --since 1h
  adagio workflows put examples/definitions/nightly.json
  adagio schedules put examples/schedules/nightly.json
  adagio runs start --workflow nightly -p date=2026-01-31 --label team=data
  adagio runs ls --workflow nightly --label team=data --status COMPLETED
  adagio runs inspect RUN_ID -o dot | dot -Tsvg > run.svg

Exit codes: 0 ok; 1 the watched run did not succeed; 2 usage error or bad graph;
3 the daemon refused or could not be reached.`,
    );

  const runs = program.command('runs').description('start, list, inspect, watch, cancel and retry runs');

  runs
    .command('ls')
    .alias('list')
    .description(
      'list runs, newest first: id, creation time, status, duration, finish time, node progress and failed nodes',
    )
    .option('--limit <n>', `how many runs to show (1 to ${MAX_LIST_LIMIT}; default ${DEFAULT_LIST_LIMIT})`)
    .option(
      '--since <time>',
      'only runs created since: a duration back from now (1h, 30m) or an RFC 3339 time',
    )
    .option('--until <time>', 'only runs created before: a duration back from now or an RFC 3339 time')
    .option('--cursor <cursor>', 'continue a listing from the cursor a previous page printed')
    .option('--workflow <name>', 'only runs started from this workflow')
    .option(
      '--label <key=value>',
      'only runs with this label (repeat for several: all must match)',
      collectPairs('--label'),
    )
    .option('--status <status>', 'only runs in this status: WAITING, RUNNING or COMPLETED')
    .option(
      '--conclusion <conclusion>',
      'only completed runs that ended so: SUCCESS, FAIL, CANCELLED or TIMED_OUT',
    )
    .option('--search <text>', 'only runs whose id starts with, or whose name contains, this text (any case)')
    .option('--all', 'follow every page to the end')
    .option('--json', 'print the JSON of GET /v0/runs')
    .action(
      act(
        (
          ctx,
          opts: {
            limit?: string;
            since?: string;
            until?: string;
            cursor?: string;
            workflow?: string;
            label?: Record<string, string>;
            status?: string;
            conclusion?: string;
            search?: string;
            all?: boolean;
            json?: boolean;
          },
        ) => {
          const now = ctx.io.now();
          return runsList(ctx, {
            query: {
              limit: opts.limit === undefined ? undefined : parseLimit(opts.limit),
              since: opts.since === undefined ? undefined : parseTimeFlag('--since', opts.since, now),
              until: opts.until === undefined ? undefined : parseTimeFlag('--until', opts.until, now),
              cursor: opts.cursor,
              workflow: opts.workflow,
              labels: opts.label,
              status: opts.status === undefined ? undefined : parseStatus(opts.status),
              conclusion: opts.conclusion === undefined ? undefined : parseConclusion(opts.conclusion),
              search: opts.search,
            },
            all: Boolean(opts.all),
            json: Boolean(opts.json),
          });
        },
      ),
    );

  runs
    .command('start')
    .description(
      'start a run of the graph in FILE (JSON, or stdin when FILE is - or absent), or of a stored workflow (--workflow)',
    )
    .argument('[file]', 'graph file in JSON; - or nothing for stdin (not with --workflow)')
    .option('--workflow <name>', 'start this stored workflow (see `adagio workflows ls`)')
    .option(
      '-v, --workflow-version <n>',
      "with --workflow: this version instead of the latest (--version is the CLI's own)",
    )
    .option(
      '-p, --param <key=value>',
      "with --workflow: a param's value (repeat for several)",
      collectPairs('--param'),
    )
    .option('--name <name>', "the run's name (default: the workflow's name)")
    .option('--label <key=value>', 'label the run (repeat for several)', collectPairs('--label'))
    .option(
      '--request-id <id>',
      'an idempotency key: a start repeating it returns the run the first one created',
    )
    .option('-q, --quiet', 'print only the run id')
    .option('-w, --watch', 'then follow the run until it completes (exit 0 only if it succeeded)')
    .option('--lines', 'with --watch: one line per transition even on a terminal')
    .option('--no-output', 'with --watch: leave out the lines running nodes print')
    .option('--json', 'print the started run as JSON (as the API returns it)')
    .action(
      act(
        (
          ctx,
          file: string | undefined,
          opts: {
            quiet?: boolean;
            watch?: boolean;
            json?: boolean;
            lines?: boolean;
            output?: boolean;
            workflow?: string;
            workflowVersion?: string;
            param?: Record<string, string>;
            name?: string;
            label?: Record<string, string>;
            requestId?: string;
          },
        ) =>
          runsStart(ctx, file, {
            quiet: Boolean(opts.quiet),
            watch: Boolean(opts.watch),
            json: Boolean(opts.json),
            lines: Boolean(opts.lines),
            noOutput: opts.output === false,
            start: {
              workflow: opts.workflow,
              version: opts.workflowVersion === undefined ? undefined : parseVersion(opts.workflowVersion),
              params: opts.param,
              name: opts.name,
              labels: opts.label,
              requestId: opts.requestId,
            },
          }),
      ),
    );

  runs
    .command('inspect')
    .alias('show')
    .description("show a run: each node's status, conclusion, attempts and timings")
    .argument('<id>', 'run id')
    .addOption(
      new Option(
        '-o, --output <format>',
        'pretty, json (as GET /v0/runs/{id} returns it), dot (Graphviz) or timeline (attempts on a time axis)',
      )
        .choices(['pretty', 'json', 'dot', 'timeline'])
        .default('pretty'),
    )
    .action(act((ctx, id: string, opts: { output: InspectFormat }) => runsInspect(ctx, id, opts)));

  runs
    .command('watch')
    .description('follow a run live until it completes; exit 0 if every node succeeded, 1 otherwise')
    .argument('<id>', 'run id')
    .option('-q, --quiet', 'print nothing; the exit code tells how the run ended')
    .option('--lines', 'one line per transition even on a terminal')
    .option('--no-output', 'leave out the lines running nodes print (shown as `NODE | line` by default)')
    .action(
      act((ctx, id: string, opts: { quiet?: boolean; lines?: boolean; output?: boolean }) =>
        runsWatch(ctx, id, {
          quiet: Boolean(opts.quiet),
          lines: Boolean(opts.lines),
          noOutput: opts.output === false,
        }),
      ),
    );

  runs
    .command('logs')
    .description("print a node's output as text: the running attempt's so far, else the last one's")
    .argument('<id>', 'run id')
    .argument('<node>', 'node name')
    .option('--attempt <n>', 'this attempt (1-based) instead')
    .option(
      '-f, --follow',
      'follow the output live until the attempt ends (without --attempt: until the node completes)',
    )
    .action(
      act((ctx, id: string, node: string, opts: { attempt?: string; follow?: boolean }) =>
        runsLogs(ctx, checkId(id), node, {
          attempt: opts.attempt === undefined ? undefined : parseAttempt(opts.attempt),
          follow: Boolean(opts.follow),
        }),
      ),
    );

  runs
    .command('cancel')
    .description(
      'cancel a run: running nodes get a CANCELLED attempt and their work is stopped, the rest never start. ' +
        'Again on a cancelled run: "already cancelled", exit 0; on a run that completed on its own: nothing to cancel, exit 1',
    )
    .argument('<id>', 'run id')
    .option('-q, --quiet', 'print nothing')
    .option('--json', 'print the cancelled run as JSON (as the API returns it)')
    .action(
      act((ctx, id: string, opts: { quiet?: boolean; json?: boolean }) =>
        runsCancel(ctx, id, { quiet: Boolean(opts.quiet), json: Boolean(opts.json) }),
      ),
    );

  runs
    .command('retry')
    .description(
      'resume a completed run that did not succeed, under the same id: its failed, cancelled and unreached nodes run again (with --node: only those and what is downstream of them); succeeded nodes keep their outputs and every earlier attempt is kept',
    )
    .argument('<id>', 'run id')
    .option('--node <name>', 'retry only this node and what is downstream of it (repeatable)', collect, [])
    .option('-w, --watch', 'then watch the run until it completes (exit 0 only if it succeeded)')
    .option('--lines', 'with --watch: one line per transition even on a terminal')
    .option('-q, --quiet', 'print nothing')
    .option('--json', 'print the retried run as JSON (as the API returns it)')
    .action(
      act(
        (
          ctx,
          id: string,
          opts: { node: string[]; watch?: boolean; lines?: boolean; quiet?: boolean; json?: boolean },
        ) =>
          runsRetry(ctx, id, {
            nodes: opts.node,
            watch: Boolean(opts.watch),
            lines: Boolean(opts.lines),
            quiet: Boolean(opts.quiet),
            json: Boolean(opts.json),
          }),
      ),
    );

  runs
    .command('rerun')
    .description(
      'start a new run of the graph a run was started from, with its name and labels (a run of a workflow: the same version with the same params)',
    )
    .argument('<id>', 'run id')
    .option('-w, --watch', 'then watch the new run until it completes (exit 0 only if it succeeded)')
    .option('--lines', 'with --watch: one line per transition even on a terminal')
    .option('-q, --quiet', 'print only the new run id')
    .option('--json', 'print the new run as JSON (as the API returns it)')
    .action(
      act((ctx, id: string, opts: { watch?: boolean; lines?: boolean; quiet?: boolean; json?: boolean }) =>
        runsRerun(ctx, id, {
          watch: Boolean(opts.watch),
          lines: Boolean(opts.lines),
          quiet: Boolean(opts.quiet),
          json: Boolean(opts.json),
        }),
      ),
    );

  const workflows = program
    .command('workflows')
    .description('store, list, show and delete workflow definitions (named, versioned graphs with params)');
  workflows
    .command('put')
    .description(
      'store FILE as a new version of its workflow (the same content as the latest version stores nothing)',
    )
    .argument('<file>', 'workflow file: {"name", "spec": graph, "description", "params": [...]} in JSON')
    .option('--json', 'print the stored version as JSON')
    .action(
      act((ctx, file: string, opts: { json?: boolean }) =>
        workflowsPut(ctx, file, { json: Boolean(opts.json) }),
      ),
    );
  workflows
    .command('ls')
    .alias('list')
    .description("list workflows: each one's latest version, params and description")
    .option('--json', 'print the JSON of GET /v0/workflows')
    .action(act((ctx, opts: { json?: boolean }) => workflowsList(ctx, { json: Boolean(opts.json) })));
  workflows
    .command('show')
    .alias('inspect')
    .description('show a workflow: description, params, nodes (the latest version unless --workflow-version)')
    .argument('<name>', 'workflow name')
    .option('-v, --workflow-version <n>', "this version instead of the latest (--version is the CLI's own)")
    .option('--versions', 'list every version instead, newest first')
    .option('--json', 'print it as JSON')
    .action(
      act((ctx, name: string, opts: { workflowVersion?: string; versions?: boolean; json?: boolean }) =>
        workflowsShow(ctx, name, {
          version: opts.workflowVersion === undefined ? undefined : parseVersion(opts.workflowVersion),
          versions: Boolean(opts.versions),
          json: Boolean(opts.json),
        }),
      ),
    );
  workflows
    .command('rm')
    .alias('delete')
    .description('delete a workflow and all its versions (runs started from it are kept)')
    .argument('<name>', 'workflow name')
    .option('-q, --quiet', 'print nothing')
    .action(
      act((ctx, name: string, opts: { quiet?: boolean }) =>
        workflowsRemove(ctx, name, { quiet: Boolean(opts.quiet) }),
      ),
    );

  const schedules = program
    .command('schedules')
    .description(
      'cron schedules of stored workflows: put, list, show, pause, resume, trigger, backfill, delete',
    );
  schedules
    .command('put')
    .description('store FILE as a schedule (a new one fires from the first slot after now)')
    .argument(
      '<file>',
      'schedule file: {"name", "workflow", "cron", "timezone", "params", "overlap", "catchup", "paused"} in JSON',
    )
    .option('--json', 'print the stored schedule as JSON')
    .action(
      act((ctx, file: string, opts: { json?: boolean }) =>
        schedulesPut(ctx, file, { json: Boolean(opts.json) }),
      ),
    );
  schedules
    .command('ls')
    .alias('list')
    .description('list schedules: workflow, cron, time zone, overlap, paused or not, next slot')
    .option('--json', 'print the JSON of GET /v0/schedules')
    .action(act((ctx, opts: { json?: boolean }) => schedulesList(ctx, { json: Boolean(opts.json) })));
  schedules
    .command('show')
    .alias('inspect')
    .description('show a schedule: its definition, next fire times, recent runs, missed and skipped slots')
    .argument('<name>', 'schedule name')
    .option('--json', 'print the JSON of GET /v0/schedules/{name}')
    .action(
      act((ctx, name: string, opts: { json?: boolean }) =>
        schedulesShow(ctx, name, { json: Boolean(opts.json) }),
      ),
    );
  for (const [command, paused, what] of [
    [
      'pause',
      true,
      'stop starting runs (slots passing while paused are missed, or caught up within catchup)',
    ],
    ['resume', false, 'start runs again from the next undecided slot'],
  ] as const)
    schedules
      .command(command)
      .description(`${command} a schedule: ${what}`)
      .argument('<name>', 'schedule name')
      .option('-q, --quiet', 'print nothing')
      .action(
        act((ctx, name: string, opts: { quiet?: boolean }) =>
          schedulesPause(ctx, name, paused, { quiet: Boolean(opts.quiet) }),
        ),
      );
  schedules
    .command('trigger')
    .description('start a run of the schedule now, outside its cron (its slot is now, to the second)')
    .argument('<name>', 'schedule name')
    .option('--json', 'print the run as JSON')
    .action(
      act((ctx, name: string, opts: { json?: boolean }) =>
        schedulesTrigger(ctx, name, { json: Boolean(opts.json) }),
      ),
    );
  schedules
    .command('backfill')
    .description(
      'start a run for every slot from --from to --to (inclusive, at most 500 slots); a slot that has a run keeps it',
    )
    .argument('<name>', 'schedule name')
    .requiredOption('--from <time>', 'first time, RFC 3339 (e.g. 2026-01-01T00:00:00Z)')
    .requiredOption('--to <time>', 'last time, RFC 3339')
    .option('--json', 'print the runs as JSON')
    .action(
      act((ctx, name: string, opts: { from?: string; to?: string; json?: boolean }) =>
        schedulesBackfill(ctx, name, { from: opts.from, to: opts.to, json: Boolean(opts.json) }),
      ),
    );
  schedules
    .command('rm')
    .alias('delete')
    .description('delete a schedule (its runs are kept)')
    .argument('<name>', 'schedule name')
    .option('-q, --quiet', 'print nothing')
    .action(
      act((ctx, name: string, opts: { quiet?: boolean }) =>
        schedulesRemove(ctx, name, { quiet: Boolean(opts.quiet) }),
      ),
    );

  const agents = program.command('agents').description('list the agents serving the daemon');
  agents
    .command('ls')
    .alias('list')
    .description('list live agents: id, host, start time and runtimes')
    .option('--json', 'print the JSON of GET /v0/agents')
    .action(act((ctx, opts: { json?: boolean }) => agentsList(ctx, { json: Boolean(opts.json) })));

  program
    .command('stats')
    .description('count runs and nodes by status')
    .option('--json', 'print the JSON of GET /v0/stats')
    .action(act((ctx, opts: { json?: boolean }) => stats(ctx, { json: Boolean(opts.json) })));

  configureAll(program, deps);
  return program;
}

/**
 * Every command writes through `io`, throws instead of exiting, and reports
 * usage errors as one line naming the command to ask for help.
 */
function configureAll(cmd: Command, deps: ProgramDeps) {
  cmd.exitOverride();
  cmd.configureOutput({
    writeOut: (s) => deps.io.stdout.write(s),
    writeErr: (s) => deps.io.stderr.write(s),
    // main.ts prints the one line from the thrown CommanderError; here we only learn whose it is.
    outputError: () => deps.setFailingCommand?.(commandPath(cmd)),
  });
  for (const sub of cmd.commands) configureAll(sub, deps);
}

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** Whether a CommanderError is help or version output rather than a failure, and the code to exit with. */
export function commanderExit(e: CommanderError): { code: number; message?: string } {
  if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return { code: EXIT.ok };
  // `adagio help [COMMAND]` asked for the help (commander's exit code 0); `adagio` or `adagio runs`
  // alone left out the command, and commander has printed the help on stderr.
  if (e.code === 'commander.help') return { code: e.exitCode === 0 ? EXIT.ok : EXIT.usage };
  if (e.code === 'commander.executeSubCommandAsync') return { code: EXIT.usage };
  // Commander puts a suggestion on a line of its own ("(Did you mean logs?)").
  return { code: EXIT.usage, message: oneLine(e.message.replace(/^error:\s*/, '')) };
}

export { CommanderError };

/** Commander's accumulator for a repeatable option. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
