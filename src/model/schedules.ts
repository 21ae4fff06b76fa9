import { Cron } from 'croner';
import { InvalidArgumentError } from '../protocol/errors.js';
import { DurationError, parseDuration } from '../runtimes/duration.js';
import { rfc3339 } from './ids.js';
import type { Labels, Params, RunSummary } from './types.js';
import { checkWorkflowName, type ParamSpec, resolveParams, WORKFLOW_LIMITS } from './workflows.js';

/**
 * Schedules (docs/design.md rule 18): the types, every check, and every
 * decision a scheduler takes — which slots are due, which are missed, what an
 * overlapping run means — as pure functions, so every backend stores the same
 * thing and every scheduler process decides alike. Cron parsing, time zones
 * and next fire times are croner's.
 */

export type OverlapPolicy = 'skip' | 'allow' | 'buffer_one' | 'cancel_previous';
export const OVERLAP_POLICIES: readonly OverlapPolicy[] = ['skip', 'allow', 'buffer_one', 'cancel_previous'];

/** What a caller puts: the body of `PUT /v0/schedules/{name}`. */
export interface ScheduleInput {
  workflow: string;
  /** 5 fields, or 6 with seconds first. */
  cron: string;
  /** IANA time zone the cron is read in; default UTC. */
  timezone?: string;
  /** The workflow's params; `{{schedule.time}}` in a value is the slot's time (RFC 3339, UTC). */
  params?: Params;
  /** Default skip. */
  overlap?: OverlapPolicy;
  /** How far back a missed slot is still started after downtime; default 0 (none). */
  catchup?: string;
  paused?: boolean;
}

/** What happened to a slot. */
export type SlotOutcome = 'started' | 'skipped' | 'missed' | 'failed';

export interface SlotRecord {
  /** RFC 3339, UTC. */
  slot: string;
  outcome: SlotOutcome;
  runId?: string;
  /** Why a failed slot's start was refused (its workflow's params changed, say). */
  error?: string;
}

/** A stored schedule: its definition and where its firing stands. */
export interface Schedule {
  name: string;
  workflow: string;
  cron: string;
  timezone: string;
  params: Params;
  overlap: OverlapPolicy;
  catchup: string;
  paused: boolean;
  /** The earliest slot not yet decided (RFC 3339, UTC); every scheduler compares-and-sets it. */
  nextSlot: string;
  /** The latest decided slots, newest first, at most SCHEDULE_LIMITS.maxHistory. */
  history: SlotRecord[];
  createdAt: string;
  updatedAt: string;
}

/** What `GET /v0/schedules/{name}` shows: the schedule, its next fire times and its latest runs. */
export interface ScheduleView {
  schedule: Schedule;
  nextSlots: string[];
  recentRuns: RunSummary[];
}

export const SCHEDULE_LIMITS = {
  /** A backfill starts at most this many slots; ask for a shorter range otherwise. */
  maxBackfillSlots: 500,
  /** Slot records a schedule keeps (its "recent" and "missed" lists). */
  maxHistory: 50,
  /** Slots one step records as missed; a longer outage takes several steps. */
  maxMissedPerStep: 1000,
  /**
   * A slot late by less than this is started whatever the catch-up window
   * (even 0): lateness of a scheduler's tick or a slow store is not downtime.
   */
  graceMs: 30_000,
  /** Longest catch-up window. */
  maxCatchupMs: 7 * 24 * 3_600_000,
  maxCronLength: 256,
} as const;

/** Labels every scheduled run carries. */
export const SCHEDULE_LABEL = 'adagio.schedule';
export const SLOT_LABEL = 'adagio.slot';
const SLOT_REF = /\{\{\s*schedule\.time\s*\}\}/g;

function cronOf(cron: string, timezone: string): Cron {
  return new Cron(cron, { timezone, paused: true, mode: '5-or-6-parts' });
}

function cronProblem(cron: unknown, timezone: string): string | undefined {
  if (typeof cron !== 'string' || cron.trim() === '') return 'cron is required';
  const fields = cron.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6)
    return `cron ${JSON.stringify(cron)} has ${fields} fields: write 5 (minute hour day month weekday), or 6 with seconds first`;
  if (cron.length > SCHEDULE_LIMITS.maxCronLength)
    return `cron is longer than ${SCHEDULE_LIMITS.maxCronLength} characters`;
  try {
    const c = cronOf(cron, timezone);
    if (c.nextRun(new Date()) === null) return `cron ${JSON.stringify(cron)} never fires`;
  } catch (e) {
    return `cron ${JSON.stringify(cron)} is not a cron expression of 5 fields, or 6 with seconds first: ${(e as Error).message.replace(/^CronPattern: /, '')}`;
  }
  return undefined;
}

function timezoneProblem(tz: unknown): string | undefined {
  if (typeof tz !== 'string' || tz === '') return 'timezone must be an IANA time zone name';
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return undefined;
  } catch {
    return `timezone ${JSON.stringify(tz)} is not a known IANA time zone (e.g. "UTC", "Europe/Berlin")`;
  }
}

/** The catch-up window in ms; InvalidArgumentError naming a bad one. */
export function catchupMs(text: string): number {
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (e) {
    if (e instanceof DurationError) throw new InvalidArgumentError(`catchup: ${e.message}`);
    throw e;
  }
  if (ms > SCHEDULE_LIMITS.maxCatchupMs)
    throw new InvalidArgumentError(`catchup ${JSON.stringify(text)} is longer than 7 days`);
  return ms;
}

/** A schedule name: named like a workflow. */
export function checkScheduleName(name: string): void {
  try {
    checkWorkflowName(name);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message.replace('workflow name', 'schedule name'));
  }
}

/**
 * Rule 18: the problems of a schedule put, each naming what is wrong: its
 * name, workflow name, cron, time zone, overlap policy, catch-up window and
 * params (text values). Whether the workflow exists and takes these params is
 * checkScheduleParams, once the backend has read it.
 */
export function validateSchedule(name: string, input: ScheduleInput): string[] {
  const problems: string[] = [];
  const push = (f: () => void) => {
    try {
      f();
    } catch (e) {
      problems.push((e as Error).message);
    }
  };
  push(() => checkScheduleName(name));
  if (input === null || typeof input !== 'object' || Array.isArray(input))
    return [...problems, 'schedule must be an object with a workflow and a cron'];
  push(() => checkWorkflowName(input.workflow));
  const tz = input.timezone ?? 'UTC';
  const tzp = timezoneProblem(tz);
  if (tzp) problems.push(tzp);
  const cp = cronProblem(input.cron, tzp ? 'UTC' : tz);
  if (cp) problems.push(cp);
  if (input.overlap !== undefined && !OVERLAP_POLICIES.includes(input.overlap))
    problems.push(
      `overlap must be one of ${OVERLAP_POLICIES.join(', ')}, got ${JSON.stringify(input.overlap)}`,
    );
  if (input.catchup !== undefined) {
    if (typeof input.catchup !== 'string') problems.push('catchup must be a duration like "1h"');
    else push(() => catchupMs(input.catchup!));
  }
  if (input.paused !== undefined && typeof input.paused !== 'boolean')
    problems.push('paused must be true or false');
  const params = input.params ?? {};
  if (params === null || typeof params !== 'object' || Array.isArray(params))
    problems.push('params must be an object of name → text');
  else if (Object.keys(params).length > WORKFLOW_LIMITS.maxParams)
    problems.push(`schedule gives more than ${WORKFLOW_LIMITS.maxParams} params`);
  else
    for (const [k, v] of Object.entries(params))
      if (typeof v !== 'string') problems.push(`param ${JSON.stringify(k)} must be text`);
  return problems;
}

export function checkSchedule(name: string, input: ScheduleInput): void {
  const problems = validateSchedule(name, input);
  if (problems.length > 0)
    throw new InvalidArgumentError(`schedule ${JSON.stringify(name)}: ${problems.join('; ')}`);
}

/** The schedule's params must suit its workflow's declared params (unknown, missing), as a start would check. */
export function checkScheduleParams(name: string, params: Params, declared: readonly ParamSpec[]): void {
  try {
    resolveParams(declared, slotParams(params, '1970-01-01T00:00:00Z'));
  } catch (e) {
    throw new InvalidArgumentError(`schedule ${JSON.stringify(name)}: ${(e as Error).message}`);
  }
}

/** The params of a slot's run: `{{schedule.time}}` replaced by the slot's time. */
export function slotParams(params: Params, slot: string): Params {
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, v.replace(SLOT_REF, slot)]));
}

/** Labels of a slot's run. */
export function slotLabels(name: string, slot: string): Labels {
  return { [SCHEDULE_LABEL]: name, [SLOT_LABEL]: slot };
}

/** The request id of a slot's run: every scheduler (and a backfill) starting the slot uses it, so the slot has one run. */
export function slotRequestId(name: string, slot: string): string {
  return `schedule:${name}:${slot}`;
}

/** The first slot strictly after `afterMs`; undefined when the cron never fires again. */
export function slotAfter(s: Pick<Schedule, 'cron' | 'timezone'>, afterMs: number): string | undefined {
  const next = slotAfterMs(s, afterMs);
  return next === undefined ? undefined : slotText(next);
}

/** The next `n` slots strictly after `afterMs`. */
export function slotsAfter(s: Pick<Schedule, 'cron' | 'timezone'>, afterMs: number, n: number): string[] {
  const slots: string[] = [];
  for (let at = slotAfterMs(s, afterMs); at !== undefined && slots.length < n; at = slotAfterMs(s, at))
    slots.push(slotText(at));
  return slots;
}

/**
 * The next slot strictly after `afterMs`, ms. A local time the spring DST
 * change skips fires at the change (02:00 Berlin is 03:00 CEST): croner does
 * so for a single value (`0 2 * * *`) but drops a day's list, range or step
 * in the gap (`0,30 2 * * *`, `*\/15 2 * * *`, `0 *\/2 * * *` lost a run). So
 * when the zone's offset grows before croner's next slot, the cron is read in
 * the offset before the change too: a match in the skipped hour is a slot at
 * the change.
 */
function slotAfterMs(s: Pick<Schedule, 'cron' | 'timezone'>, afterMs: number): number | undefined {
  const next = cronOf(s.cron, s.timezone).nextRun(new Date(afterMs))?.getTime();
  if (next === undefined) return undefined;
  const before = offsetMinutes(s.timezone, afterMs);
  const after = offsetMinutes(s.timezone, next);
  if (after <= before) return next;
  // The change: within a second before `hi`, and changes fall on whole minutes.
  let lo = afterMs;
  let hi = next;
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2);
    if (offsetMinutes(s.timezone, mid) === before) lo = mid;
    else hi = mid;
  }
  const change = Math.floor(hi / 60_000) * 60_000;
  const gapMs = (after - before) * 60_000;
  const inOldOffset = new Cron(s.cron, { utcOffset: before, paused: true, mode: '5-or-6-parts' })
    .nextRun(new Date(afterMs))
    ?.getTime();
  return inOldOffset !== undefined && inOldOffset >= change && inOldOffset < change + gapMs && change < next
    ? change
    : next;
}

/** One formatter per zone: making one costs far more than using it. */
const offsetFormats = new Map<string, Intl.DateTimeFormat>();

/** The zone's offset from UTC at `ms`, in minutes (east positive). */
function offsetMinutes(timezone: string, ms: number): number {
  let format = offsetFormats.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone: timezone, timeZoneName: 'longOffset' });
    offsetFormats.set(timezone, format);
  }
  const name = format.formatToParts(new Date(ms)).find((p) => p.type === 'timeZoneName')?.value;
  const m = /GMT([+-])(\d{2}):(\d{2})/.exec(name ?? '');
  return m ? (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) : 0;
}

/** A slot's time as RFC 3339 in UTC, whole seconds (cron slots have no fraction). */
export function slotText(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** When no slot comes again, nextSlot holds this far-future sentinel: nothing is ever due. */
export const NEVER = '9999-12-31T23:59:59Z';

/**
 * The stored schedule after a put at `now`: a new one fires from the first
 * slot after now; an existing one keeps its place and history unless its cron
 * or time zone changed (then it starts over from now).
 */
export function scheduleAfterPut(
  existing: Schedule | undefined,
  name: string,
  input: ScheduleInput,
  now: number,
): Schedule {
  const timing = { cron: input.cron.trim(), timezone: input.timezone ?? 'UTC' };
  const same = existing && existing.cron === timing.cron && existing.timezone === timing.timezone;
  return {
    name,
    workflow: input.workflow,
    ...timing,
    params: { ...(input.params ?? {}) },
    overlap: input.overlap ?? 'skip',
    catchup: input.catchup ?? '0',
    paused: input.paused ?? false,
    nextSlot: same ? existing.nextSlot : (slotAfter(timing, now) ?? NEVER),
    history: same ? existing.history : [],
    createdAt: existing?.createdAt ?? rfc3339(now),
    updatedAt: rfc3339(now),
  };
}

/** A step a scheduler takes on a schedule: move nextSlot from `from` to `to`, recording these slots. */
export interface ScheduleStep {
  from: string;
  to: string;
  records: SlotRecord[];
}

/** The schedule after a step, or undefined when another scheduler moved it first (nextSlot is not `from`). */
export function applyStep(s: Schedule, step: ScheduleStep, now: number): Schedule | undefined {
  if (s.nextSlot !== step.from) return undefined;
  return {
    ...s,
    nextSlot: step.to,
    history: [...[...step.records].reverse(), ...s.history].slice(0, SCHEDULE_LIMITS.maxHistory),
    updatedAt: rfc3339(now),
  };
}

/** What a scheduler does next with a schedule at `now`. */
export type SchedulePlan =
  /** Nothing is due (or it is paused). */
  | { kind: 'idle' }
  /** Slots older than the catch-up window: record them missed and move on. */
  | { kind: 'missed'; step: ScheduleStep }
  /** Start the slot's run (cancelling the older ones first with cancel_previous), then take the step. */
  | { kind: 'start'; slot: string; cancelPrevious: boolean; step: ScheduleStep }
  /** An older run is still going and the policy skips this slot. */
  | { kind: 'skip'; step: ScheduleStep }
  /** buffer_one: the slot waits for the older run to end. */
  | { kind: 'wait'; slot: string };

/**
 * Rule 18: the decision for the schedule's next undecided slot at `now`,
 * given whether a run of an earlier slot of this schedule is still going
 * (`busy`). Due slots older than `catchup` (at least graceMs) are missed (in bulk); a due slot
 * within it starts unless an earlier run is busy: skip drops it, allow starts
 * it anyway, cancel_previous cancels the busy runs first, buffer_one lets only
 * the latest due slot wait (earlier waiting ones are skipped). A slot that
 * buffer_one held for an earlier run is late from when that run ended
 * (`heldUntil`, ms; now while it still runs), not from its own time: waiting
 * is not downtime.
 */
export function planSchedule(s: Schedule, now: number, busy: boolean, heldUntil?: number): SchedulePlan {
  if (s.paused) return { kind: 'idle' };
  const slotMs = Date.parse(s.nextSlot);
  if (!(slotMs <= now)) return { kind: 'idle' };
  const horizon = now - Math.max(catchupMs(s.catchup), SCHEDULE_LIMITS.graceMs);
  const startable =
    s.overlap === 'buffer_one' && heldUntil !== undefined ? Math.max(slotMs, heldUntil) : slotMs;
  if (startable < horizon) {
    const missed: SlotRecord[] = [];
    let slot: string | undefined = s.nextSlot;
    while (
      slot !== undefined &&
      Date.parse(slot) < horizon &&
      missed.length < SCHEDULE_LIMITS.maxMissedPerStep
    ) {
      missed.push({ slot, outcome: 'missed' });
      slot = slotAfter(s, Date.parse(slot));
    }
    return { kind: 'missed', step: { from: s.nextSlot, to: slot ?? NEVER, records: missed } };
  }
  const next = slotAfter(s, slotMs) ?? NEVER;
  const step = (outcome: SlotOutcome): ScheduleStep => ({
    from: s.nextSlot,
    to: next,
    records: [{ slot: s.nextSlot, outcome }],
  });
  if (!busy || s.overlap === 'allow' || s.overlap === 'cancel_previous')
    return {
      kind: 'start',
      slot: s.nextSlot,
      cancelPrevious: busy && s.overlap === 'cancel_previous',
      step: step('started'),
    };
  if (s.overlap === 'buffer_one' && !(Date.parse(next) <= now)) return { kind: 'wait', slot: s.nextSlot };
  return { kind: 'skip', step: step('skipped') };
}

/** An RFC 3339 date-time: a full date and time with an offset (`Z` or ±hh:mm), fractions allowed. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** `text` as ms since the epoch if it is an RFC 3339 time (Date.parse alone takes "1", or a time without offset in the process's zone). */
function rfc3339Ms(text: string, what: string): number {
  const ms = RFC3339.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms))
    throw new InvalidArgumentError(
      `${what} ${JSON.stringify(text)} is not an RFC 3339 time (e.g. 2026-05-01T10:00:00Z or 2026-05-01T12:00:00+02:00)`,
    );
  return ms;
}

/**
 * Slots of a backfill: those in [from, to], at most maxBackfillSlots
 * (refused beyond, naming the limit). A backfill starts past slots: `to`
 * after `now` is refused (a future slot started now would be its slot's run
 * when it comes due, and nothing would run then).
 */
export function backfillSlots(
  s: Pick<Schedule, 'cron' | 'timezone'>,
  from: string,
  to: string,
  now: number,
): string[] {
  const f = rfc3339Ms(from, 'backfill from');
  const t = rfc3339Ms(to, 'backfill to');
  if (f > t) throw new InvalidArgumentError(`backfill from ${from} is after to ${to}`);
  if (t > now)
    throw new InvalidArgumentError(
      `backfill to ${to} is in the future (now is ${slotText(now)}): a backfill starts past slots; the scheduler starts the others when they come due`,
    );
  const slots: string[] = [];
  let slot = slotAfter(s, f - 1);
  while (slot !== undefined && Date.parse(slot) <= t) {
    if (slots.length === SCHEDULE_LIMITS.maxBackfillSlots)
      throw new InvalidArgumentError(
        `backfill from ${from} to ${to} covers more than ${SCHEDULE_LIMITS.maxBackfillSlots} slots: ask for a shorter range`,
      );
    slots.push(slot);
    slot = slotAfter(s, Date.parse(slot));
  }
  return slots;
}
