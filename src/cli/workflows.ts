import type { RunConclusion, RunStatus } from '../model/types.js';
import { GraphParseError, graphFromJson } from '../model/wire.js';
import {
  type ParamSpec,
  validateWorkflow,
  type WorkflowDefinition,
  type WorkflowInput,
} from '../model/workflows.js';
import { InvalidGraphError } from '../protocol/errors.js';
import type { Context } from './commands.js';
import { CliError, EXIT } from './errors.js';
import { fitTable, formatTimestamp, table } from './format.js';
import { readJsonObjectFile, refuseUnknownKeys } from './input.js';

/**
 * `adagio workflows …` (rule 16), and the flags of `runs start` and `runs ls`
 * about workflows, params, names and labels (rule 17).
 */

const WORKFLOW_FILE_KEYS = ['name', 'spec', 'description', 'params'] as const;
const PARAM_KEYS = ['name', 'required', 'default', 'description'] as const;

/**
 * A workflow file: the body of PUT /v0/workflows/{name} with its `name`.
 * Checked as the daemon will check it, so mistakes are reported with the
 * file named and before any network call.
 */
export async function readWorkflowFile(file: string): Promise<{ name: string; input: WorkflowInput }> {
  const o = await readJsonObjectFile(
    file,
    'a workflow file is a JSON object {"name", "spec", "description", "params"}',
  );
  refuseUnknownKeys(file, o, WORKFLOW_FILE_KEYS);
  if (Array.isArray(o.params))
    for (const [i, p] of o.params.entries())
      if (p !== null && typeof p === 'object' && !Array.isArray(p))
        refuseUnknownKeys(file, p as Record<string, unknown>, PARAM_KEYS, `params[${i}]: `);
  if (typeof o.name !== 'string' || o.name === '') throw new CliError(`${file}: "name" is required`);
  if (!('spec' in o)) throw new CliError(`${file}: "spec" (the graph) is required`);
  let spec: WorkflowInput['spec'];
  try {
    spec = graphFromJson(o.spec);
  } catch (e) {
    if (e instanceof GraphParseError) throw new CliError(`${file}: spec: ${e.message}`);
    throw e;
  }
  if (o.params !== undefined && !Array.isArray(o.params))
    throw new CliError(`${file}: "params" must be a list`);
  const input: WorkflowInput = {
    spec,
    description: o.description as string | undefined,
    params: o.params as ParamSpec[] | undefined,
  };
  const problems = validateWorkflow(o.name, input);
  if (problems.length > 0) throw new CliError(`${file}: ${new InvalidGraphError(problems).message}`);
  return { name: o.name, input };
}

export async function workflowsPut(ctx: Context, file: string, opts: { json: boolean }): Promise<number> {
  const { name, input } = await readWorkflowFile(file);
  const before = await latestVersion(ctx, name);
  const w = await ctx.client().putWorkflow(name, input);
  if (opts.json) ctx.io.stdout.write(`${JSON.stringify(w, null, 2)}\n`);
  else
    ctx.io.stdout.write(
      w.version === before
        ? `workflow ${w.name} unchanged: version ${w.version} has this content\n`
        : `stored workflow ${w.name} version ${w.version}\n`,
    );
  return EXIT.ok;
}

async function latestVersion(ctx: Context, name: string): Promise<number | undefined> {
  try {
    return (await ctx.client().getWorkflow(name)).version;
  } catch (e) {
    if ((e as { code?: string }).code === 'not_found') return undefined;
    throw e;
  }
}

export async function workflowsList(ctx: Context, opts: { json: boolean }): Promise<number> {
  const list = await ctx.client().listWorkflows();
  if (opts.json) ctx.io.stdout.write(`${JSON.stringify({ workflows: list }, null, 2)}\n`);
  else if (list.length === 0)
    ctx.io.stderr.write('adagio: no workflows stored (see `adagio workflows put`)\n');
  else {
    const out = ctx.io.stdout;
    out.write(
      fitTable(
        ['NAME', 'VERSION', 'UPDATED', 'PARAMS', 'DESCRIPTION'],
        list.map((w) => [
          w.name,
          String(w.latestVersion),
          formatTimestamp(w.createdAt),
          w.params.map(paramLabel).join(', ') || '-',
          firstLine(w.description) || '-',
        ]),
        [],
        // A narrow terminal gets the description shortened (`show` has it whole), never the params.
        { columns: out.isTTY ? out.columns : undefined, drop: ['UPDATED'], shrink: 'DESCRIPTION' },
      ),
    );
  }
  return EXIT.ok;
}

export async function workflowsShow(
  ctx: Context,
  name: string,
  opts: { version?: number; json: boolean; versions: boolean },
): Promise<number> {
  const client = ctx.client();
  if (opts.versions) {
    const all = await client.listWorkflowVersions(name);
    if (opts.json) ctx.io.stdout.write(`${JSON.stringify({ workflows: all }, null, 2)}\n`);
    else
      ctx.io.stdout.write(
        table(
          ['VERSION', 'CREATED', 'NODES', 'DESCRIPTION'],
          all.map((w) => [
            String(w.version),
            formatTimestamp(w.createdAt),
            String(w.spec.nodes.length),
            firstLine(w.description) || '-',
          ]),
        ),
      );
    return EXIT.ok;
  }
  const w = await client.getWorkflow(name, opts.version);
  ctx.io.stdout.write(opts.json ? `${JSON.stringify(w, null, 2)}\n` : workflowPretty(w));
  return EXIT.ok;
}

export async function workflowsRemove(ctx: Context, name: string, opts: { quiet: boolean }): Promise<number> {
  await ctx.client().deleteWorkflow(name);
  if (!opts.quiet) ctx.io.stdout.write(`deleted workflow ${name} (its runs are kept)\n`);
  return EXIT.ok;
}

function workflowPretty(w: WorkflowDefinition): string {
  const lines = [`workflow ${w.name} version ${w.version}, stored ${formatTimestamp(w.createdAt)}`];
  if (w.description) lines.push('', w.description);
  lines.push('', 'params:');
  if (w.params.length === 0) lines.push('  (none)');
  for (const p of w.params) lines.push(`  ${paramLabel(p)}${p.description ? `  ${p.description}` : ''}`);
  lines.push('', `nodes: ${w.spec.nodes.map((n) => `${n.name} (${n.runtime})`).join(', ')}`);
  if (w.spec.edges.length > 0)
    lines.push(`edges: ${w.spec.edges.map((e) => `${e.source} -> ${e.destination}`).join(', ')}`);
  lines.push(
    '',
    `start it: adagio runs start --workflow ${w.name}${w.params
      .filter((p) => p.required)
      .map((p) => ` -p ${p.name}=…`)
      .join('')}`,
  );
  return `${lines.join('\n')}\n`;
}

function paramLabel(p: ParamSpec): string {
  if (p.required) return `${p.name} (required)`;
  return p.default ? `${p.name}=${p.default}` : p.name;
}

function firstLine(s: string): string {
  const line = s.split('\n')[0] ?? '';
  return line.length > 60 ? `${line.slice(0, 59)}…` : line;
}

// ---- flags shared with `runs start` and `runs ls`

/** Collects a repeatable `key=value` flag into a map; the flag is named in errors. */
export function collectPairs(
  flag: string,
): (value: string, previous: Record<string, string> | undefined) => Record<string, string> {
  return (value, previous) => {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new CliError(`${flag} takes key=value, got ${JSON.stringify(value)}`);
    const key = value.slice(0, eq);
    const v = value.slice(eq + 1);
    const before = previous && Object.hasOwn(previous, key) ? previous[key] : undefined;
    // The same pair twice is harmless; two values for one key are a mistake that last-wins would hide.
    if (before !== undefined && before !== v)
      throw new CliError(`${flag} ${key} given twice: ${JSON.stringify(before)} and ${JSON.stringify(v)}`);
    return { ...previous, [key]: v };
  };
}

const STATUSES: readonly RunStatus[] = ['WAITING', 'RUNNING', 'COMPLETED'];
const CONCLUSIONS: readonly RunConclusion[] = ['SUCCESS', 'FAIL', 'CANCELLED', 'TIMED_OUT'];

export function parseStatus(v: string): RunStatus {
  const s = v.toUpperCase() as RunStatus;
  if (!STATUSES.includes(s))
    throw new CliError(`--status must be one of ${STATUSES.join(', ')}, got ${JSON.stringify(v)}`);
  return s;
}

export function parseConclusion(v: string): RunConclusion {
  const c = v.toUpperCase() as RunConclusion;
  if (!CONCLUSIONS.includes(c))
    throw new CliError(`--conclusion must be one of ${CONCLUSIONS.join(', ')}, got ${JSON.stringify(v)}`);
  return c;
}

export function parseVersion(v: string): number {
  if (!/^\d{1,9}$/.test(v) || Number(v) < 1)
    throw new CliError(`--workflow-version must be a whole number from 1, got ${JSON.stringify(v)}`);
  return Number(v);
}
