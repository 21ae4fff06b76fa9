import type { ParamSpec, Schedule } from '../../model/index.js';
import type { ScheduleCell, ScheduleStore, WorkflowToken } from '../schedules.js';
import type { Db } from './db.js';
import {
  DELETE_SCHEDULE,
  GET_SCHEDULE,
  INSERT_SCHEDULE,
  LIST_SCHEDULES,
  LOCK_WORKFLOW,
  UPDATE_SCHEDULE,
  WORKFLOW_EXISTS,
} from './sql.js';
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

  async write(schedule: Schedule, rev: string | undefined, workflow?: WorkflowToken): Promise<boolean> {
    const body = JSON.stringify(schedule);
    const args = [schedule.name, schedule.workflow, body];
    if (workflow === undefined) {
      const res = await this.db.retrying('write schedule', () =>
        rev === undefined
          ? this.db.query('insert schedule', INSERT_SCHEDULE, args)
          : this.db.query('update schedule', UPDATE_SCHEDULE, [...args, rev]),
      );
      return res.rowCount === 1;
    }
    // A put: under the workflow's advisory lock, which deleteWorkflow takes too, and only while it exists.
    return this.db.retrying('put schedule', () =>
      this.db.tx('put schedule', async (c) => {
        await c.query(LOCK_WORKFLOW, [schedule.workflow]);
        if ((await c.query(WORKFLOW_EXISTS, [schedule.workflow])).rowCount === 0) return false;
        const res =
          rev === undefined
            ? await c.query(INSERT_SCHEDULE, args)
            : await c.query(UPDATE_SCHEDULE, [...args, rev]);
        return res.rowCount === 1;
      }),
    );
  }

  async remove(name: string): Promise<boolean> {
    const res = await this.db.retrying('delete schedule', () =>
      this.db.query('delete schedule', DELETE_SCHEDULE, [name]),
    );
    return (res.rowCount ?? 0) > 0;
  }

  async workflowParams(workflow: string): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }> {
    return { params: (await getWorkflow(this.db, workflow)).params, token: true };
  }
}
