import {
  backfillSlots,
  type Run,
  SCHEDULE_LABEL,
  type Schedule,
  type ScheduleView,
  SLOT_LABEL,
  slotLabels,
  slotParams,
  slotRequestId,
  slotsAfter,
  slotText,
} from '../model/index.js';
import type { Repository } from '../protocol/repository.js';

/**
 * Starting a schedule's runs (rule 18). Every start of a slot, by any
 * scheduler process or a backfill, uses the slot's request id, so a slot has
 * one run however many processes start it, and however often one retries.
 */

/** Starts (or finds) the slot's run. */
export function startSlot(repo: Repository, s: Schedule, slot: string): Promise<Run> {
  return repo.start(undefined, {
    workflow: s.workflow,
    params: slotParams(s.params, slot),
    labels: slotLabels(s.name, slot),
    requestId: slotRequestId(s.name, slot),
  });
}

/**
 * A run of the schedule now, outside its cron (overlap is not consulted). Its
 * slot is now to the second: triggers within one second are one run.
 */
export async function triggerSchedule(repo: Repository, name: string, now: number): Promise<Run> {
  const s = await repo.getSchedule(name);
  const slot = slotText(now);
  return repo.start(undefined, {
    workflow: s.workflow,
    params: slotParams(s.params, slot),
    labels: { ...slotLabels(s.name, slot), 'adagio.trigger': 'manual' },
    requestId: `${slotRequestId(s.name, slot)}:trigger`,
  });
}

/**
 * Starts every slot of the schedule in [from, to] (at most
 * SCHEDULE_LIMITS.maxBackfillSlots; overlap is not consulted; `to` no later than `now`). A slot that
 * already has a run keeps it: the runs returned are those of the slots.
 */
export async function backfillSchedule(
  repo: Repository,
  name: string,
  from: string,
  to: string,
  now: number,
): Promise<Run[]> {
  const s = await repo.getSchedule(name);
  const slots = backfillSlots(s, from, to, now);
  const runs: Run[] = [];
  for (const slot of slots) runs.push(await startSlot(repo, s, slot));
  return runs;
}

/** The schedule's runs not yet completed whose slot is before `slot` (the ones an overlap policy weighs). */
export async function busyRuns(repo: Repository, s: Schedule, slot: string): Promise<string[]> {
  const ids: string[] = [];
  for (const status of ['WAITING', 'RUNNING'] as const) {
    let cursor: string | undefined;
    do {
      const page = await repo.listRuns({ labels: { [SCHEDULE_LABEL]: s.name }, status, limit: 1000, cursor });
      for (const r of page.runs) {
        const runSlot = r.labels?.[SLOT_LABEL];
        if (runSlot !== undefined && Date.parse(runSlot) < Date.parse(slot)) ids.push(r.id);
      }
      cursor = page.nextCursor;
    } while (cursor);
  }
  return ids;
}

/**
 * buffer_one (rule 18): until when an earlier slot's run held back `slot`:
 * `now` while one still runs, else the latest end of one that ended after
 * `slot` came due; undefined when none held it (the slot is simply late).
 */
export async function heldUntil(
  repo: Repository,
  s: Schedule,
  slot: string,
  now: number,
): Promise<number | undefined> {
  if ((await busyRuns(repo, s, slot)).length > 0) return now;
  const slotMs = Date.parse(slot);
  // The run that held it is of the slot before: among the schedule's newest runs.
  const page = await repo.listRuns({ labels: { [SCHEDULE_LABEL]: s.name }, status: 'COMPLETED', limit: 20 });
  let held: number | undefined;
  for (const r of page.runs) {
    const runSlot = r.labels?.[SLOT_LABEL];
    const ended = r.finishedAt ? Date.parse(r.finishedAt) : Number.NaN;
    if (runSlot !== undefined && Date.parse(runSlot) < slotMs && ended > slotMs)
      held = Math.max(held ?? 0, ended);
  }
  return held;
}

/** How many next fire times and recent runs a schedule's view shows. */
export const VIEW_SIZE = 10;

export async function scheduleView(repo: Repository, name: string, now: number): Promise<ScheduleView> {
  const schedule = await repo.getSchedule(name);
  const from = Math.max(now, Date.parse(schedule.nextSlot) - 1);
  const page = await repo.listRuns({ labels: { [SCHEDULE_LABEL]: name }, limit: VIEW_SIZE });
  return { schedule, nextSlots: slotsAfter(schedule, from, VIEW_SIZE), recentRuns: page.runs };
}
