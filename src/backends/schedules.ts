import {
  applyStep,
  type Clock,
  checkSchedule,
  checkScheduleName,
  checkScheduleParams,
  type ParamSpec,
  type Schedule,
  type ScheduleInput,
  type ScheduleStep,
  scheduleAfterPut,
} from '../model/index.js';
import { InvalidArgumentError, NotFoundError, scheduleNotFound } from '../protocol/errors.js';

/**
 * Schedules on any store (rule 18). A backend gives one record per name with
 * a revision and a compare-and-set write; every change here is read, decide
 * (a pure function of src/model/schedules.ts), write if the revision is
 * unchanged, else read again. So a pause never loses a scheduler's step, and
 * of two schedulers stepping the same slot only one succeeds.
 */
export interface ScheduleCell {
  schedule: Schedule;
  /** Opaque revision the write compares. */
  rev: string;
}

export interface ScheduleStore {
  read(name: string): Promise<ScheduleCell | undefined>;
  list(): Promise<Schedule[]>;
  /**
   * Writes when the stored revision is still `rev` (undefined: absent);
   * false otherwise. With `workflow` (a put), also only while that workflow
   * is as workflowParams read it, so a concurrent deleteWorkflow either sees
   * this schedule or makes this write fail.
   */
  write(schedule: Schedule, rev: string | undefined, workflow?: WorkflowToken): Promise<boolean>;
  /** True when there was one to remove. */
  remove(name: string): Promise<boolean>;
  /** The latest version's declared params and a token for write; NotFoundError when the workflow does not exist. */
  workflowParams(workflow: string): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }>;
}

/** What a store needs to tie a schedule put to the workflow it read (opaque here). */
export type WorkflowToken = unknown;

/** A lost compare retries; this many lost rounds in a row means something is wrong. */
const MAX_ROUNDS = 100;

export class Schedules {
  constructor(
    private readonly store: ScheduleStore,
    private readonly clock: Clock,
  ) {}

  async put(name: string, input: ScheduleInput): Promise<Schedule> {
    checkSchedule(name, input);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const workflow = await this.declaredParams(name, input.workflow);
      checkScheduleParams(name, input.params ?? {}, workflow.params);
      const cell = await this.store.read(name);
      const next = scheduleAfterPut(cell?.schedule, name, input, this.clock.now());
      if (await this.store.write(next, cell?.rev, workflow.token)) return next;
    }
    throw lostRaces(name);
  }

  /** An unknown workflow is bad input to a schedule put (400), not a missing schedule. */
  private async declaredParams(
    name: string,
    workflow: string,
  ): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }> {
    try {
      return await this.store.workflowParams(workflow);
    } catch (e) {
      if (e instanceof NotFoundError && e.kind === 'workflow')
        throw new InvalidArgumentError(
          `schedule ${JSON.stringify(name)}: workflow ${JSON.stringify(workflow)} does not exist (put it first)`,
        );
      throw e;
    }
  }

  async get(name: string): Promise<Schedule> {
    checkScheduleName(name);
    const cell = await this.store.read(name);
    if (!cell) throw scheduleNotFound(name);
    return cell.schedule;
  }

  list(): Promise<Schedule[]> {
    return this.store.list();
  }

  async delete(name: string): Promise<void> {
    checkScheduleName(name);
    if (!(await this.store.remove(name))) throw scheduleNotFound(name);
  }

  pause(name: string, paused: boolean): Promise<Schedule> {
    checkScheduleName(name);
    return this.mutate(name, (cell) => ({ ...cell.schedule, paused }));
  }

  async advance(name: string, step: ScheduleStep): Promise<boolean> {
    checkScheduleName(name);
    try {
      await this.mutate(name, (cell) => {
        const next = applyStep(cell.schedule, step, this.clock.now());
        if (!next) throw LOST;
        return next;
      });
      return true;
    } catch (e) {
      if (e === LOST) return false;
      throw e;
    }
  }

  /** The schedule that uses the workflow, named for deleteWorkflow's refusal, or undefined. */
  async usedBy(workflow: string): Promise<string | undefined> {
    const user = (await this.store.list()).find((s) => s.workflow === workflow);
    return user ? `schedule ${JSON.stringify(user.name)}` : undefined;
  }

  private async mutate(name: string, decide: (cell: ScheduleCell) => Schedule): Promise<Schedule> {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const cell = await this.store.read(name);
      if (!cell) throw scheduleNotFound(name);
      const next = decide(cell);
      if (await this.store.write(next, cell.rev)) return next;
    }
    throw lostRaces(name);
  }
}

function lostRaces(name: string): Error {
  return new Error(`schedule ${JSON.stringify(name)}: lost ${MAX_ROUNDS} write races in a row`);
}

const LOST = Symbol('lost');
