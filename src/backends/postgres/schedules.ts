import type { ParamSpec, Schedule } from '../../model/index.js';
import type { ScheduleCell, ScheduleStore } from '../schedules.js';
import type { Db } from './db.js';
import { DELETE_SCHEDULE, GET_SCHEDULE, INSERT_SCHEDULE, LIST_SCHEDULES, UPDATE_SCHEDULE } from './sql.js';
import { getWorkflow } from './workflows.js';

/** Schedules on PostgreSQL (rule 18): one row each, written only where its revision is unchanged. */
export class PostgresScheduleStore implements ScheduleStore {
  constructor(private readonly db: Db) {}

  async read(name: string): Promise<ScheduleCell | undefined> {
    const { rows } = await this.db.retrying('read schedule', () =>
      this.db.query<{ body: Schedule; revision: string }>('read schedule', GET_SCHEDULE, [name]),
    );
    const row = rows[0];
    return row ? { schedule: row.body, rev: String(row.revision) } : undefined;
  }

  async list(): Promise<Schedule[]> {
    const { rows } = await this.db.retrying('list schedules', () =>
      this.db.query<{ body: Schedule }>('list schedules', LIST_SCHEDULES, []),
    );
    return rows.map((r) => r.body);
  }

  async write(schedule: Schedule, rev: string | undefined): Promise<boolean> {
    const body = JSON.stringify(schedule);
    const res = await this.db.retrying('write schedule', () =>
      rev === undefined
        ? this.db.query('insert schedule', INSERT_SCHEDULE, [schedule.name, schedule.workflow, body])
        : this.db.query('update schedule', UPDATE_SCHEDULE, [schedule.name, schedule.workflow, body, rev]),
    );
    return res.rowCount === 1;
  }

  async remove(name: string): Promise<boolean> {
    const res = await this.db.retrying('delete schedule', () =>
      this.db.query('delete schedule', DELETE_SCHEDULE, [name]),
    );
    return (res.rowCount ?? 0) > 0;
  }

  async workflowParams(workflow: string): Promise<readonly ParamSpec[]> {
    return (await getWorkflow(this.db, workflow)).params;
  }
}
