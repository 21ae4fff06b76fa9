import { claimable } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { readNode } from './node-read.js';
import { encodeState } from './nodes.js';
import { optimistic } from './optimistic.js';
import { decodeJson } from './records.js';
import { del, getPrefix, modIs, put } from './store.js';
import { parseWorkItem, type RetryItem, retryItem, workItemKey } from './work-items.js';

/**
 * The time rules on etcd, judged by the process clock (etcd has none a
 * transaction can read; ctx.clock is injectable). A retry with a delay is
 * READY with its due time on the node (`ra`) and a k/<run>/r:<node> work
 * item, but without its queue key, so no subscriber hears of it and claims
 * refuse it until then. Releasing writes the queue key (subscribers get
 * NODE_READY), clears `ra` and drops the item, in one transaction. The
 * finishing process releases it at the due time; any process's sweeper
 * does when that one died.
 */

/** Makes the node claimable and announces it, if its delay is over; drops a stale item. */
export async function releaseRetry(ctx: EtcdContext, runId: string, node: string): Promise<boolean> {
  const { keys, store } = ctx;
  const itemKey = workItemKey(keys, runId, retryItem(node));
  return optimistic<boolean>(store, 'release retry', async () => {
    const r = await readNode(ctx, runId, node, false);
    const rec = r.node?.rec;
    if (!r.node || !rec) return { compare: [], success: [del(itemKey)], result: false }; // run deleted
    if (rec.s !== 'READY' || !rec.ra)
      // Claimed or cancelled since: nothing to announce. The compare keeps an item a newer retry wrote.
      return { compare: [modIs(keys.node(runId, node), r.node.rev)], success: [del(itemKey)], result: false };
    if (!claimable(rec.ra, ctx.clock.now())) return { done: false };
    return {
      compare: [modIs(keys.node(runId, node), r.node.rev)],
      success: [
        put(keys.node(runId, node), encodeState({ ...rec, ra: undefined })),
        put(keys.ready(rec.spec.runtime, runId, node), Buffer.alloc(0)),
        del(itemKey),
      ],
      result: true,
    };
  });
}

/** Releases the node at `due` (this process's timer; the sweeper covers a process that dies first). */
export function releaseWhenDue(ctx: EtcdContext, runId: string, node: string, due: number): void {
  const timer = setTimeout(
    () => {
      releaseRetry(ctx, runId, node).catch((e: unknown) =>
        ctx.logger.debug('retry release left to the sweeper', {
          run: runId,
          node,
          error: (e as Error).message,
        }),
      );
    },
    Math.max(0, due - ctx.clock.now()),
  );
  timer.unref();
}

/** One pass: every retry whose delay is over is released. Cheap when nothing waits (one range of k/). */
export async function sweepTimers(ctx: EtcdContext): Promise<{ released: number }> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const res = await store.txn({ success: [getPrefix(keys.work())] });
  let released = 0;
  for (const kv of res.responses[0]!.response_range.kvs) {
    const runId = keys.workRun(kv.key);
    const item = parseWorkItem(decodeURIComponent(kv.key.toString().slice(keys.work(runId).length)));
    if (item?.kind !== 'retry') continue;
    if (decodeJson<RetryItem>(kv.value).due > now) continue;
    if (await releaseRetry(ctx, runId, item.node)) released++;
  }
  return { released };
}
