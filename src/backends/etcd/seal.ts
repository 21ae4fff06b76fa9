import { conclusionOf } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, encodeJson, type RunRecord } from './records.js';
import { countPrefix, get, getRange, modIs, put } from './store.js';

/** Rule 7 on etcd: a run's conclusion is written once nothing in it is open. */

/** Writes the run's conclusion once no node is open. Readers derive it when absent; this makes lists cheap. */
export async function maybeSeal(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  await optimistic(store, `seal of run ${runId}`, async (): Promise<Decision<void>> => {
    const res = await store.retrying('seal', () =>
      store.txn({
        success: [
          get(keys.run(runId)),
          getRange(keys.failedRange(runId), { limit: 1 }),
          countPrefix(keys.open('W', runId)),
          countPrefix(keys.open('R', runId)),
          countPrefix(keys.open('U', runId)),
        ],
      }),
    );
    const r = res.responses.map((x) => x.response_range);
    const kv = r[0]!.kvs[0];
    if (!kv) return { done: undefined };
    const run = decodeJson<RunRecord>(kv.value);
    if (run.conclusion || run.resuming) return { done: undefined };
    if (Number(r[2]!.count) + Number(r[3]!.count) + Number(r[4]!.count) > 0) return { done: undefined };
    const conclusion = conclusionOf({
      cancelled: run.cancelled === true,
      failed: r[1]!.kvs.length > 0,
      timedOut: run.to === true,
    });
    return {
      compare: [modIs(keys.run(runId), kv.mod_revision)],
      success: [put(keys.run(runId), encodeJson({ ...run, conclusion, finishedAt: ctx.clock.now() }))],
      result: undefined,
    };
  });
}
