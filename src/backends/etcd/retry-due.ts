import { claimable } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { readNode } from './node-read.js';
import { encodeState } from './nodes.js';
import { optimistic } from './optimistic.js';
import { del, modIs, put } from './store.js';
import { retryDueItem, timedItemKey } from './work-items.js';

/**
 * Releasing a delayed retry (rule 5's backoff): the finish that set the delay
 * arms a timer here, and timing.ts's sweeper calls releaseRetry for a process
 * that died first. Kept apart from timing.ts, which finishes timed-out
 * attempts through finish.ts, so that finish.ts and timing.ts do not import
 * each other.
 */

/** Makes the node claimable and announces it, if its delay is over; drops the item (`itemKey`) when stale. */
export async function releaseRetry(
  ctx: EtcdContext,
  runId: string,
  node: string,
  itemKey: Buffer,
): Promise<boolean> {
  const { keys, store } = ctx;
  return optimistic<boolean>(store, `release of ${runId}/${node}'s retry`, async () => {
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
      releaseRetry(ctx, runId, node, timedItemKey(ctx.keys, runId, retryDueItem(node), due)).catch(
        (e: unknown) =>
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
