import { type Schedule, type ScheduleInput, validateSchedule } from '../model/schedules.js';
import type { Run } from '../model/types.js';
import type { Context } from './commands.js';
import { CliError, EXIT } from './errors.js';
import { formatTimestamp, table } from './format.js';
import { readJsonObjectFile, refuseUnknownKeys } from './input.js';

/** `adagio schedules …` (rule 18). */

const SCHEDULE_FILE_KEYS = [
  'name',
  'workflow',
  'cron',
  'timezone',
  'params',
  'overlap',
  'catchup',
  'paused',
] as const satisfies readonly ('name' | keyof ScheduleInput)[];

/**
 * A schedule file: the body of PUT /v0/schedules/{name} with its `name`.
 * Checked as the daemon will check it (all but the workflow), so mistakes
 * name the file before any network call.
 */
export async function readScheduleFile(file: string): Promise<{ name: string; input: ScheduleInput }> {
  const json = await readJsonObjectFile(
    file,
    'a schedule file is a JSON object {"name", "workflow", "cron", ...}',
  );
  refuseUnknownKeys(file, json, SCHEDULE_FILE_KEYS);
  const { name, ...input } = json as unknown as { name?: unknown } & ScheduleInput;
  if (typeof name !== 'string' || name === '') throw new CliError(`${file}: "name" is required`);
  const problems = validateSchedule(name, input);
  if (problems.length > 0) throw new CliError(`${file}: ${problems.join('; ')}`);
  return { name, input };
}

export async function schedulesPut(ctx: Context, file: string, opts: { json: boolean }): Promise<number> {
  const { name, input } = await readScheduleFile(file);
  const s = await ctx.client().putSchedule(name, input);
  if (opts.json) ctx.io.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
  else ctx.io.stdout.write(`stored schedule ${s.name}: next slot ${formatTimestamp(s.nextSlot)}\n`);
  return EXIT.ok;
}

export async function schedulesList(ctx: Context, opts: { json: boolean }): Promise<number> {
  const list = await ctx.client().listSchedules();
  if (opts.json) ctx.io.stdout.write(`${JSON.stringify({ schedules: list }, null, 2)}\n`);
  else if (list.length === 0)
    ctx.io.stderr.write('adagio: no schedules stored (see `adagio schedules put`)\n');
  else
    ctx.io.stdout.write(
      table(
        ['NAME', 'WORKFLOW', 'CRON', 'TIMEZONE', 'OVERLAP', 'STATE', 'NEXT'],
        list.map((s) => [
          s.name,
          s.workflow,
          s.cron,
          s.timezone,
          s.overlap,
          s.paused ? 'paused' : 'active',
          s.paused ? '-' : formatTimestamp(s.nextSlot),
        ]),
      ),
    );
  return EXIT.ok;
}

export async function schedulesShow(ctx: Context, name: string, opts: { json: boolean }): Promise<number> {
  const view = await ctx.client().getSchedule(name);
  if (opts.json) {
    ctx.io.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
    return EXIT.ok;
  }
  const s = view.schedule;
  const out = ctx.io.stdout;
  out.write(`schedule ${s.name}${s.paused ? ' (paused)' : ''}\n`);
  out.write(`  workflow  ${s.workflow}\n  cron      ${s.cron} (${s.timezone})\n`);
  out.write(`  overlap   ${s.overlap}\n  catchup   ${s.catchup}\n`);
  for (const [k, v] of Object.entries(s.params)) out.write(`  param     ${k}=${v}\n`);
  out.write(
    `\nnext fire times:\n${view.nextSlots.map((t) => `  ${formatTimestamp(t)}\n`).join('') || '  none\n'}`,
  );
  out.write('\nrecent runs:\n');
  out.write(
    view.recentRuns.length === 0
      ? '  none\n'
      : table(
          ['SLOT', 'RUN', 'STATUS'],
          view.recentRuns.map((r) => [r.labels?.['adagio.slot'] ?? '-', r.id, r.conclusion ?? r.status]),
        ),
  );
  const notStarted = s.history.filter((h) => h.outcome !== 'started');
  if (notStarted.length > 0) {
    out.write('\nslots not started (missed after downtime, skipped by overlap, failed):\n');
    out.write(
      table(
        ['SLOT', 'OUTCOME', 'WHY'],
        notStarted.map((h) => [h.slot, h.outcome, h.error ?? '-']),
      ),
    );
  }
  return EXIT.ok;
}

export async function schedulesPause(
  ctx: Context,
  name: string,
  paused: boolean,
  opts: { quiet: boolean },
): Promise<number> {
  const client = ctx.client();
  const s: Schedule = paused ? await client.pauseSchedule(name) : await client.resumeSchedule(name);
  if (!opts.quiet) ctx.io.stdout.write(`schedule ${s.name} ${s.paused ? 'paused' : 'resumed'}\n`);
  return EXIT.ok;
}

export async function schedulesTrigger(ctx: Context, name: string, opts: { json: boolean }): Promise<number> {
  const run = await ctx.client().triggerSchedule(name);
  writeRuns(ctx, [run], opts.json);
  return EXIT.ok;
}

export async function schedulesBackfill(
  ctx: Context,
  name: string,
  opts: { from?: string; to?: string; json: boolean },
): Promise<number> {
  if (!opts.from || !opts.to)
    throw new CliError('backfill needs --from and --to (RFC 3339 times)', EXIT.usage);
  const runs = await ctx.client().backfillSchedule(name, opts.from, opts.to);
  writeRuns(ctx, runs, opts.json);
  return EXIT.ok;
}

export async function schedulesRemove(ctx: Context, name: string, opts: { quiet: boolean }): Promise<number> {
  await ctx.client().deleteSchedule(name);
  if (!opts.quiet) ctx.io.stdout.write(`deleted schedule ${name}\n`);
  return EXIT.ok;
}

function writeRuns(ctx: Context, runs: Run[], json: boolean): void {
  if (json)
    ctx.io.stdout.write(
      `${JSON.stringify({ runs: runs.map((r) => ({ id: r.id, labels: r.labels })) }, null, 2)}\n`,
    );
  else if (runs.length === 0) ctx.io.stdout.write('no slots in that range\n');
  else
    ctx.io.stdout.write(
      table(
        ['SLOT', 'RUN'],
        runs.map((r) => [r.labels?.['adagio.slot'] ?? '-', r.id]),
      ),
    );
}
