import type { IRequestOp, IResponseOp } from 'etcd3';
import { conclusionOf } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, encodeJson, type NodeRecord, type RunRecord } from './records.js';
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

/**
 * Whether a finish may be its run's last completion is learnt in its own
 * transaction, without counting the run's open nodes (a count range walks
 * every key in it, so a check per finish made a wide run quadratic): the
 * transaction also reads one node this process saw open (a witness, not one
 * it finishes). If the witness is still open at the finish's revision, the
 * finish was not the last: the witness's own completion comes later and
 * checks again (the last completion always falls back to maybeSeal). The
 * read goes after the transaction's writes, so it sees them.
 */
export function sealProbe(ctx: EtcdContext, runId: string, busy: ReadonlySet<string>) {
  const witness = ctx.seen.openNode(runId, busy);
  if (witness === undefined) return undefined;
  return { witness, op: get(ctx.keys.node(runId, witness)) satisfies IRequestOp };
}

/** What the probe read says: true when the witness was open at the transaction's revision. */
export function witnessOpen(
  ctx: EtcdContext,
  runId: string,
  probe: { witness: string },
  response: IResponseOp | undefined,
): boolean {
  const kv = response?.response_range?.kvs[0];
  const open = kv !== undefined && decodeJson<Pick<NodeRecord, 's'>>(kv.value).s !== 'COMPLETED';
  if (!open) ctx.seen.notOpen(runId, probe.witness);
  return open;
}
