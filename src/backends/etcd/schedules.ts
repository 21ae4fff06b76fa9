import type { ParamSpec, Schedule } from '../../model/index.js';
import type { ScheduleCell, ScheduleStore } from '../schedules.js';
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

  async write(schedule: Schedule, rev: string | undefined): Promise<boolean> {
    const { keys, store } = this.ctx;
    const key = keys.schedule(schedule.name);
    const res = await store.retrying('write schedule', () =>
      store.txn({
        compare: [rev === undefined ? absent(key) : modIs(key, rev)],
        success: [put(key, encodeJson(schedule))],
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

  async workflowParams(workflow: string): Promise<readonly ParamSpec[]> {
    return (await getWorkflow(this.ctx, workflow)).params;
  }
}
