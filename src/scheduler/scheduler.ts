import { type Logger, silentLogger } from '../log.js';
import { type Clock, planSchedule, type Schedule, type ScheduleStep, systemClock } from '../model/index.js';
import { InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import type { Repository } from '../protocol/repository.js';
import { busyRuns, heldUntil, startSlot } from './actions.js';

export interface SchedulerOptions {
  clock?: Clock;
  /** How often every schedule is looked at; default 1 s (a slot fires within this of its time). */
  intervalMs?: number;
  logger?: Logger;
}

/** Steps one schedule takes in a tick at most, so one schedule's long backlog cannot starve the others. */
const MAX_STEPS_PER_TICK = 100;

/**
 * The scheduler loop (rule 18). Any number run at once on one store, one per
 * `adagiod api` process: each tick reads every schedule, asks planSchedule
 * what its next undecided slot needs, starts the slot's run under the slot's
 * request id, and only then compares-and-sets the schedule's next slot. A
 * process that dies between the two leaves the slot undecided; whoever steps
 * it next starts it again and gets the same run back. A scheduler that loses
 * the compare reads the schedule again: someone else took the step.
 */
export class Scheduler {
  private readonly clock: Clock;
  private readonly intervalMs: number;
  private readonly logger: Logger;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly repo: Repository,
    options: SchedulerOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.intervalMs = options.intervalMs ?? 1000;
    this.logger = options.logger ?? silentLogger;
  }

  start(): void {
    const loop = () => {
      if (this.stopped) return;
      this.running = this.tick()
        .catch((e) => this.logger.warn('scheduler tick failed', { error: (e as Error).message }))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(loop, this.intervalMs);
        });
    };
    loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** Decides every due slot of every schedule at the clock's now. Public so tests with a manual clock drive it. */
  async tick(): Promise<void> {
    const now = this.clock.now();
    for (const s of await this.repo.listSchedules()) {
      try {
        await this.stepSchedule(s, now);
      } catch (e) {
        if (e instanceof NotFoundError && e.kind === 'schedule') continue; // deleted meanwhile
        this.logger.warn('schedule step failed', { schedule: s.name, error: (e as Error).message });
      }
    }
  }

  private async stepSchedule(first: Schedule, now: number): Promise<void> {
    let s = first;
    for (let i = 0; i < MAX_STEPS_PER_TICK; i++) {
      let plan = planSchedule(s, now, false);
      if (plan.kind === 'missed' && s.overlap === 'buffer_one') {
        // Late, or held for an earlier run (buffer_one): then it is late only from that run's end.
        const held = await heldUntil(this.repo, s, s.nextSlot, now);
        if (held !== undefined) plan = planSchedule(s, now, false, held);
      }
      let busy: string[] = [];
      if (plan.kind === 'start' && s.overlap !== 'allow') {
        busy = await busyRuns(this.repo, s, plan.slot);
        if (busy.length > 0) plan = planSchedule(s, now, true, now);
      }
      let step: ScheduleStep;
      let created = false;
      switch (plan.kind) {
        case 'idle':
        case 'wait':
          return;
        case 'missed':
          this.logger.warn('schedule slots missed (older than its catchup)', {
            schedule: s.name,
            count: plan.step.records.length,
            first: plan.step.from,
          });
          step = plan.step;
          break;
        case 'skip':
          this.logger.info('schedule slot skipped: an earlier run is still going', {
            schedule: s.name,
            slot: plan.step.from,
          });
          step = plan.step;
          break;
        case 'start': {
          // What this step read may be stale by now (the tick's list, a slow look at earlier runs): another
          // scheduler may have decided the slot since (missed, skipped). Started only while it is still next.
          const current = await this.repo.getSchedule(s.name);
          if (current.nextSlot !== plan.slot || current.paused) {
            s = current;
            continue;
          }
          if (plan.cancelPrevious) for (const id of busy) await this.repo.cancel(id);
          ({ step, created } = await this.started(s, plan.slot, plan.step));
          break;
        }
      }
      if (!(await this.repo.advanceSchedule(s.name, step))) {
        this.logger.debug('schedule stepped by another scheduler', { schedule: s.name, slot: step.from });
        const started = step.records[0];
        if (started?.outcome === 'started' && started.runId)
          await this.undoStart(s.name, started.slot, started.runId, created);
      }
      s = await this.repo.getSchedule(s.name);
    }
  }

  /**
   * A start whose step another scheduler took first: if that one decided the
   * slot otherwise (missed, skipped: it read the schedule after this one did),
   * this start was one the schedule does not have, and its run is cancelled.
   * The same start by both gets the same run (the slot's request id): kept.
   * A decision the history no longer holds (it keeps the latest 50; a catch-up
   * records up to 1,000 missed slots in one step) is read from the start
   * itself: a run this start made (`created`) is one nobody else started.
   */
  private async undoStart(name: string, slot: string, runId: string, created: boolean): Promise<void> {
    const now = await this.repo.getSchedule(name);
    const decided = now.history.find((r) => r.slot === slot);
    if (decided ? decided.outcome === 'started' && decided.runId === runId : !created) return;
    this.logger.warn(
      'schedule slot started here was decided otherwise by another scheduler: its run is cancelled',
      {
        schedule: name,
        slot,
        run: runId,
        outcome: decided?.outcome ?? 'no longer in its history',
      },
    );
    await this.repo.cancel(runId);
  }

  /**
   * The step after starting the slot: its record names the run, or why the
   * start was refused; and whether this start made the run (its creation is
   * not before the start began, by this process's clock, which stamps it),
   * rather than found the one an earlier start of the slot's request id made.
   */
  private async started(
    s: Schedule,
    slot: string,
    step: ScheduleStep,
  ): Promise<{ step: ScheduleStep; created: boolean }> {
    const startedAt = this.clock.now();
    try {
      const run = await startSlot(this.repo, s, slot);
      this.logger.info('schedule slot started', { schedule: s.name, slot, run: run.id });
      return {
        step: { ...step, records: [{ slot, outcome: 'started', runId: run.id }] },
        created: Date.parse(run.createdAt) >= startedAt,
      };
    } catch (e) {
      // A refusal will not change by retrying (the workflow's params changed under the
      // schedule, say): record it and go on rather than retry the slot forever.
      if (!(e instanceof InvalidArgumentError || e instanceof NotFoundError)) throw e;
      this.logger.warn('schedule slot refused', { schedule: s.name, slot, error: e.message });
      return { step: { ...step, records: [{ slot, outcome: 'failed', error: e.message }] }, created: false };
    }
  }
}
