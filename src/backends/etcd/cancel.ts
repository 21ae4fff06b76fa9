import type { ICompare, IRequestOp } from 'etcd3';
import { cancelledAttempt } from '../../model/index.js';
import { NotFoundError } from '../../protocol/errors.js';
import { closeOps, completed } from './close.js';
import type { EtcdContext } from './context.js';
import type { OpenStatus } from './keys.js';
import { MAX_TXN_BYTES, SETTLE_BATCH } from './limits.js';
import { encodeState, readNodes } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { dropStreamed, readStreamed } from './output.js';
import { decodeJson, encodeAttempt, encodeJson, type RunRecord } from './records.js';
import { clearResuming, finishRetry } from './resume.js';
import { maybeSeal } from './seal.js';
import { del, getPrefix, modIs, put } from './store.js';
import { type CancelItem, cancelItem, type RetryItem, retryItem, workItemKey } from './work-items.js';

/**
 * Rule 6 on etcd: the run is marked cancelled first (claims and finishes
 * compare the run key, so none slips in after), with a work item; then its
 * open nodes complete in bounded transactions, and the run is sealed.
 */

/**
 * Rule 6. Marks the run cancelled (from then on claims and finishes in it are
 * refused), then completes its open nodes. `timedOut`: its deadline cancels
 * it (rule 13), marked with the cancel so it concludes TIMED_OUT.
 */
export async function cancelRun(ctx: EtcdContext, runId: string, timedOut = false): Promise<void> {
  const { keys, store } = ctx;
  let state: 'concluded' | 'marked' | 'resuming' | 'no deadline';
  for (;;) {
    state = await markCancelled(ctx, runId, timedOut);
    // Rule 13, judged on the run as it is now: a run retried since its deadline item was read runs on without one.
    if (state === 'no deadline') return;
    if (state !== 'resuming') break;
    // A retry is putting nodes back: finished first (as its own process or the sweeper would), so the cancel
    // completes every node it put back and the run concludes, rather than cancelling only those back so far.
    const item = await store.retrying('cancel', () =>
      store.range({ key: workItemKey(keys, runId, retryItem) }),
    );
    const kv = item.kvs[0];
    if (kv) await finishRetry(ctx, runId, decodeJson<RetryItem>(kv.value));
    else await clearResuming(ctx, runId);
  }
  // Concluded already: a cancel item left by a process that died after the seal is done with (left, a later
  // sweep would cancel the run again once a retry reopens it).
  if (state === 'concluded') {
    await store.retrying('cancel', () => store.txn({ success: [del(workItemKey(keys, runId, cancelItem))] }));
    return;
  }
  await cancelNodes(ctx, runId);
  await maybeSeal(ctx, runId);
  await store.retrying('cancel', () => store.txn({ success: [del(workItemKey(keys, runId, cancelItem))] }));
}

/** Marks the run cancelled, with its work item; or says it is concluded, marked already, or being retried. */
function markCancelled(
  ctx: EtcdContext,
  runId: string,
  timedOut: boolean,
): Promise<'concluded' | 'marked' | 'resuming' | 'no deadline'> {
  const { keys, store } = ctx;
  return optimistic(
    store,
    `cancel of run ${runId}`,
    async (): Promise<Decision<'concluded' | 'marked' | 'resuming' | 'no deadline'>> => {
      const res = await store.retrying('cancel', () => store.range({ key: keys.run(runId) }));
      const kv = res.kvs[0];
      if (!kv) throw new NotFoundError('run', runId);
      const run = decodeJson<RunRecord>(kv.value);
      if (run.resuming) return { done: 'resuming' };
      if (run.conclusion) return { done: 'concluded' };
      if (timedOut && run.dl === 0) return { done: 'no deadline' };
      if (run.cancelled) return { done: 'marked' };
      return {
        compare: [modIs(keys.run(runId), kv.mod_revision)],
        success: [
          put(keys.run(runId), encodeJson({ ...run, cancelled: true, ...(timedOut ? { to: true } : {}) })),
          put(workItemKey(keys, runId, cancelItem), encodeJson({ at: ctx.clock.now() } satisfies CancelItem)),
        ],
        result: 'marked',
      };
    },
  );
}

async function cancelNodes(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  for (const status of ['U', 'R', 'W'] as OpenStatus[]) {
    const prefix = keys.open(status, runId);
    const listed = await store.retrying('cancel', () =>
      store.txn({ success: [getPrefix(prefix, { keys_only: true })] }),
    );
    const names = listed.responses[0]!.response_range.kvs.map((kv) =>
      decodeURIComponent(kv.key.subarray(prefix.length).toString()),
    );
    for (let i = 0; i < names.length; i += SETTLE_BATCH) {
      const batch = names.slice(i, i + SETTLE_BATCH);
      // Streamed outputs (up to 1 MiB each) can outgrow one request: a transaction stops
      // taking nodes at MAX_TXN_BYTES and the batch goes round again for the rest.
      for (let more = true; more; ) {
        more = await optimistic(store, `cancel of run ${runId}`, async (): Promise<Decision<boolean>> => {
          const nodes = await store.retrying('cancel', () => readNodes(ctx, runId, batch));
          const compare: ICompare[] = [];
          const ops: IRequestOp[] = [];
          let bytes = 0;
          for (const n of nodes) {
            if (!n || n.rec.s === 'COMPLETED') continue;
            let streamed: Uint8Array = new Uint8Array();
            if (n.rec.s === 'RUNNING' && n.rec.c) {
              // What the attempt streamed stays its output; the node key's compare pins the chunks read.
              streamed = await store.retrying('cancel', () => readStreamed(ctx, runId, n.rec));
              if (ops.length > 0 && bytes + streamed.length > MAX_TXN_BYTES)
                return { compare, success: ops, result: true };
              bytes += streamed.length;
            }
            compare.push(modIs(keys.node(runId, n.name), n.rev));
            ops.push(...closeOps(ctx, runId, n.rec));
            const next = completed(n.rec, now);
            if (n.rec.s === 'RUNNING' && n.rec.c) {
              next.a = n.rec.a + 1;
              next.o = undefined;
              ops.push(...dropStreamed(ctx, runId, n.rec));
              ops.push(
                put(
                  keys.attempt(runId, n.name, next.a),
                  encodeAttempt(
                    cancelledAttempt(
                      { claimId: n.rec.c.id, agentId: n.rec.c.agent },
                      n.rec.st ?? 0,
                      now,
                      streamed,
                    ),
                  ),
                ),
              );
            }
            ops.push(put(keys.node(runId, n.name), encodeState(next)));
          }
          if (ops.length === 0) return { done: false };
          return { compare, success: ops, result: false };
        });
      }
    }
  }
}
