import type { ParamSpec, Schedule } from '../../model/index.js';
import { workflowNotFound } from '../../protocol/errors.js';
import type { ScheduleCell, ScheduleStore, WorkflowToken } from '../schedules.js';
import type { EtcdContext } from './context.js';
import { prefixEnd } from './keys.js';
import { decodeJson, encodeJson } from './records.js';
import { absent, del, modIs, put } from './store.js';
import { getWorkflow } from './workflows.js';

/** Schedules on etcd (rule 18): one key per schedule, written only with a compare of its mod revision. */
export class EtcdScheduleStore implements ScheduleStore {
  constructor(private readonly ctx: EtcdContext) {}

  async read(name: string): Promise<ScheduleCell | undefined> {
    const { keys, store } = this.ctx;
    const kv = (await store.retrying('read schedule', () => store.range({ key: keys.schedule(name) })))
      .kvs[0];
    return kv ? { schedule: decodeJson<Schedule>(kv.value), rev: String(kv.mod_revision) } : undefined;
  }

  async list(): Promise<Schedule[]> {
    const { keys, store } = this.ctx;
    const res = await store.retrying('list schedules', () =>
      store.range({ key: keys.schedules(), range_end: prefixEnd(keys.schedules()) }),
    );
    return res.kvs.map((kv) => decodeJson<Schedule>(kv.value));
  }

  /**
   * With a workflow token (a put), the write also compares the workflow's
   * head key unchanged and writes it again: that bumps its revision, so a
   * deleteWorkflow that checked for users before this commit fails its own
   * compare and checks again.
   */
  async write(schedule: Schedule, rev: string | undefined, workflow?: WorkflowToken): Promise<boolean> {
    const { keys, store } = this.ctx;
    const key = keys.schedule(schedule.name);
    const head = workflow as HeadToken | undefined;
    const headKey = keys.workflowHead(schedule.workflow);
    const res = await store.retrying('write schedule', () =>
      store.txn({
        compare: [
          rev === undefined ? absent(key) : modIs(key, rev),
          ...(head ? [modIs(headKey, head.rev)] : []),
        ],
        success: [put(key, encodeJson(schedule)), ...(head ? [put(headKey, head.value)] : [])],
      }),
    );
    return res.succeeded;
  }

  async remove(name: string): Promise<boolean> {
    const { keys, store } = this.ctx;
    const res = await store.retrying('delete schedule', () =>
      store.txn({ success: [del(keys.schedule(name))] }),
    );
    return Number(res.responses[0]?.response_delete_range?.deleted ?? 0) > 0;
  }

  async workflowParams(workflow: string): Promise<{ params: readonly ParamSpec[]; token: WorkflowToken }> {
    const { keys, store } = this.ctx;
    const kv = (
      await store.retrying('read workflow head', () => store.range({ key: keys.workflowHead(workflow) }))
    ).kvs[0];
    if (!kv) throw workflowNotFound(workflow);
    // The version the head names, read after it: a put that changed it meanwhile fails the write's compare.
    const { v } = decodeJson<{ v: number }>(kv.value);
    const token: HeadToken = { rev: String(kv.mod_revision), value: kv.value };
    return { params: (await getWorkflow(this.ctx, workflow, v)).params, token };
  }
}

interface HeadToken {
  rev: string;
  value: Buffer;
}
