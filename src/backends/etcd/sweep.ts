import { cancelRun } from './cancel.js';
import { cascade } from './cascade.js';
import type { EtcdContext } from './context.js';
import { fanOut } from './fanout.js';
import { decodeJson } from './records.js';
import { finishRetry } from './resume.js';
import { maybeSeal } from './seal.js';
import { del, delPrefix, get, getPrefix, put } from './store.js';
import {
  type CascadeItem,
  cascadeItem,
  fanOutItem,
  isTimed,
  parseWorkItem,
  type RetryItem,
  type TimedItem,
  type WorkItem,
  workItemKey,
} from './work-items.js';

/**
 * Work that spans more nodes than one transaction may hold (an unreached
 * cascade, a cancel, a wide fan-out) is recorded as a k/<run>/<item> key
 * before it starts, so that if the process doing it dies, the sweeper of any
 * process completes it; each step is safe to repeat.
 */

const SWEEP_AGE_MS = 5_000;
const STAGING_AGE_MS = 10 * 60_000;

/** Completes whatever work items a finish of this node left, then seals the run if it is done. */
export async function resumeNodeWork(ctx: EtcdContext, runId: string, node: string): Promise<void> {
  const { keys, store } = ctx;
  const res = await store.retrying('finish', () =>
    store.txn({
      success: [
        get(workItemKey(keys, runId, cascadeItem(node))),
        get(workItemKey(keys, runId, fanOutItem(node))),
      ],
    }),
  );
  const failed = res.responses[0]!.response_range.kvs[0];
  if (failed) await cascade(ctx, runId, node, decodeJson<CascadeItem>(failed.value));
  if (res.responses[1]!.response_range.kvs[0]) await fanOut(ctx, runId, node);
  await maybeSeal(ctx, runId);
}

/** Completes one recorded piece of work (each is safe to repeat). */
async function doWorkItem(
  ctx: EtcdContext,
  runId: string,
  item: Exclude<WorkItem, TimedItem>,
  value: unknown,
): Promise<void> {
  if (item.kind === 'cancel') await cancelRun(ctx, runId).catch(() => undefined);
  else if (item.kind === 'retry') await finishRetry(ctx, runId, value as RetryItem);
  else if (item.kind === 'fan-out') await fanOut(ctx, runId, item.node);
  else if (item.kind === 'cascade')
    await cascade(ctx, runId, item.node, {
      ...(value as CascadeItem),
      from: (value as CascadeItem).from ?? [],
    });
}

/**
 * Completes the work a run's earlier transitions left recorded (a cancel, a
 * fan-out or a cascade whose process died, or that has not finished yet),
 * whatever its age. A retry does this before it plans: replayed after it,
 * that work would count the retried nodes down again, mark them unreached, or
 * cancel the retried run.
 */
export async function settleRunWork(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  const res = await store.retrying('retry', () => store.txn({ success: [getPrefix(keys.work(runId))] }));
  for (const kv of res.responses[0]!.response_range.kvs) {
    const item = parseWorkItem(decodeURIComponent(kv.key.toString().slice(keys.work(runId).length)));
    if (!item || isTimed(item) || item.kind === 'retry') continue;
    await doWorkItem(ctx, runId, item, decodeJson<unknown>(kv.value));
  }
  await maybeSeal(ctx, runId);
}

/** A timed item (a delayed retry, a timeout, a deadline) an older store wrote under k/<run>/ (timing.ts's d/ now). */
export interface LegacyTimedItem {
  runId: string;
  item: TimedItem;
  kv: { key: Buffer; value: Buffer; mod_revision: string };
}

/**
 * Finishes work a dead process left behind: cascades and cancels recorded
 * under k/ for longer than a few seconds, and chunked starts that never
 * committed. Cheap when there is nothing to do (two small ranges).
 */
export async function sweep(ctx: EtcdContext): Promise<LegacyTimedItem[]> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const timed: LegacyTimedItem[] = [];
  const res = await store.txn({ success: [getPrefix(keys.work()), getPrefix(keys.staging())] });
  for (const kv of res.responses[0]!.response_range.kvs) {
    const value = decodeJson<{ at: number }>(kv.value);
    if (now - value.at < SWEEP_AGE_MS) continue;
    const runId = keys.workRun(kv.key);
    const name = decodeURIComponent(kv.key.toString().slice(keys.work(runId).length));
    const item = parseWorkItem(name);
    if (!item) {
      ctx.logger.warn('unknown work item left alone', { run: runId, item: name });
      continue;
    }
    // An older store's timed item, kept here rather than under d/: the caller hands it to timing.ts.
    if (isTimed(item)) {
      timed.push({ runId, item, kv });
      continue;
    }
    await doWorkItem(ctx, runId, item, value);
    await maybeSeal(ctx, runId);
  }
  for (const kv of res.responses[1]!.response_range.kvs) {
    const s = decodeJson<{ createdAt: number; runtimes: string[] }>(kv.value);
    if (now - s.createdAt < STAGING_AGE_MS) continue;
    const runId = kv.key.toString().slice(keys.staging().length);
    const exists = await store.range({ key: keys.run(runId), count_only: true });
    // Committed, but its start died before waking every runtime: wake them all (a repeat is harmless).
    // Not committed: remove what it wrote. The staging mark goes last either way.
    const committed = Number(exists.count) > 0;
    const ops = committed
      ? s.runtimes.map((rt) => put(keys.committed(rt, runId), Buffer.alloc(0)))
      : [
          delPrefix(keys.nodes(runId)),
          delPrefix(keys.statics(runId)),
          delPrefix(keys.open('W', runId)),
          delPrefix(keys.open('R', runId)),
          ...s.runtimes.map((rt) => delPrefix(keys.queue(rt, runId))),
        ];
    await store.writeAll([...ops, del(keys.staging(runId))]);
    if (!committed) ctx.logger.info('removed an abandoned chunked start', { run: runId });
  }
  return timed;
}
