import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import type { ParamSpec, Schedule } from '../../model/index.js';
import { workflowNotFound } from '../../protocol/errors.js';
import type { ScheduleCell, ScheduleStore, WorkflowToken } from '../schedules.js';
import type { DynamoContext } from './context.js';
import { keyOf, N, S } from './db.js';
import { keyItem } from './items.js';
import { getWorkflow, isDeleting, workflowHeadKey } from './workflows.js';

/** Schedules on DynamoDB (rule 18): one item per schedule (`sched`, name), written only conditioned on its version. */
const SCHEDULES_PK = 'sched';
const scheduleKey = (name: string) => ({ pk: SCHEDULES_PK, sk: name });

interface HeadToken {
  v: number;
  t: number;
}

export class DynamoScheduleStore implements ScheduleStore {
  constructor(private readonly ctx: DynamoContext) {}

  async read(name: string): Promise<ScheduleCell | undefined> {
    const item = await this.ctx.db.get(scheduleKey(name));
    return item ? { schedule: JSON.parse(item.d!.S!) as Schedule, rev: item.v!.N! } : undefined;
  }

  async list(): Promise<Schedule[]> {
    return (await this.ctx.db.partition(SCHEDULES_PK)).map((i) => JSON.parse(i.d!.S!) as Schedule);
  }

  /**
   * With a workflow token (a put), the same transaction adds to the workflow
   * head's touch counter conditioned on the head as read: a deleteWorkflow
   * that checked for users before this commit fails its own condition and
   * checks again.
   */
  async write(schedule: Schedule, rev: string | undefined, workflow?: WorkflowToken): Promise<boolean> {
    const tx = this.ctx.db.tx();
    const v = rev === undefined ? 1 : Number(rev) + 1;
    tx.put(
      { ...keyItem(scheduleKey(schedule.name)), v: N(v), d: S(JSON.stringify(schedule)) },
      rev === undefined ? undefined : Number(rev),
    );
    const head = workflow as HeadToken | undefined;
    if (head)
      tx.update(workflowHeadKey(schedule.workflow), {
        UpdateExpression: 'SET t = :nt',
        ConditionExpression: 'v = :v AND t = :t AND attribute_not_exists(x)',
        ExpressionAttributeValues: { ':v': N(head.v), ':t': N(head.t), ':nt': N(head.t + 1) },
      });
    return this.ctx.db.commit(tx);
  }

  async remove(name: string): Promise<boolean> {
    const r = await this.ctx.db.call(() =>
      this.ctx.db.client.send(
        new DeleteItemCommand({
          TableName: this.ctx.db.table,
          Key: keyOf(scheduleKey(name)),
          ReturnValues: 'ALL_OLD',
        }),
      ),
    );
    return r.Attributes !== undefined;
  }

  async workflowParams(workflow: string): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }> {
    const head = await this.ctx.db.get(workflowHeadKey(workflow));
    if (!head || isDeleting(head)) throw workflowNotFound(workflow);
    const token: HeadToken = { v: Number(head.v!.N), t: Number(head.t?.N ?? 0) };
    return { params: (await getWorkflow(this.ctx, workflow, token.v)).params, token };
  }
}
