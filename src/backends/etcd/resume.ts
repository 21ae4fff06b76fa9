import type { ICompare, IRequestOp } from 'etcd3';
import {
  checkRetryable,
  planRetry,
  type RetriedNode,
  type RetryPlan,
  type Run,
  topology,
} from '../../model/index.js';
import { NotFoundError, RunNotRetryableError, TooLargeError } from '../../protocol/errors.js';
import type { EtcdContext } from './context.js';
import { MAX_RETRY_ITEM_BYTES, SETTLE_BATCH } from './limits.js';
import { encodeState, readNodes } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { loadRun } from './reads.js';
import { decodeJson, encodeJson, type NodeRecord, type RunRecord } from './records.js';
import { maybeSeal } from './seal.js';
import { del, modIs, put } from './store.js';
import {
  deadlineItem,
  type RetryItem,
  retryDueItem,
  retryItem,
  timedItemKey,
  workItemKey,
} from './work-items.js';

/**
 * Rule 15 on etcd. A retry can touch every node of a run, more than one
 * transaction may hold (128 ops), so it goes in steps, each safe to repeat:
 * (1) one transaction marks the run resuming (no claims, no seal), clears its
 * completion and records the plan as a work item; (2) the plan's nodes are put
 * back in batches, each losing its failed mark (rule 19); (3) the run's mark
 * is cleared, so claims may start; (4) the READY nodes' queue keys are written
 * (waking subscribers), each compared with its node; the work item goes last. The sweeper finishes a retry whose
 * process died from the recorded plan. The caller first completes the work the
 * run's earlier transitions left recorded (sweep.ts settleRunWork): replayed
 * after the plan, it would undo it.
 */
export async function retryRun(ctx: EtcdContext, runId: string, named?: string[]): Promise<void> {
  const { keys, store } = ctx;
  const item = await optimistic(store, `retry of run ${runId}`, async (): Promise<Decision<RetryItem>> => {
    const loaded = await store.retrying('retry', () => loadRun(ctx, runId));
    const { run, record } = loaded;
    if (record.resuming)
      throw new RunNotRetryableError(runId, `run ${runId} is being retried already: wait until it completes`);
    // The run key's conclusion may lag its nodes (sealing follows the last finish): judge what readers see.
    checkRetryable(runId, run);
    const plan = planOf(runId, run, named);
    // The plan itself is not recorded (a 20,000-node plan passes etcd's request limit): whoever finishes the
    // retry plans it again from the run, which nothing but the put-backs changes while it is resuming.
    const item: RetryItem = { at: ctx.clock.now(), ...(named && named.length > 0 ? { named } : {}) };
    if (Buffer.byteLength(JSON.stringify(item)) > MAX_RETRY_ITEM_BYTES)
      throw new TooLargeError(
        `retry of run ${runId}: ${named!.length} node names are too many to record; name fewer (their downstream nodes go back with them) or retry the whole run`,
      );
    // Rule 13: a retried run may conclude again (its timed-out mark goes) and runs on without a deadline.
    const { conclusion: _c, finishedAt: _f, to: _t, dl: _d, ...rest } = record;
    const next: RunRecord = { ...rest, cancelled: false, resuming: true, dl: 0 };
    // Decided on the whole run's read: commit only if the run key is still what was read
    // (a completed run's nodes change only after its run key does: a retry marks it first).
    const runKv = (await store.retrying('retry', () => store.range({ key: keys.run(runId) }))).kvs[0];
    const same = runKv?.value.equals(encodeJson(record)) === true;
    return {
      compare: [modIs(keys.run(runId), same ? runKv!.mod_revision : '0')],
      success: [
        put(keys.run(runId), encodeJson(next)),
        put(workItemKey(keys, runId, retryItem), encodeJson(item)),
        ...(record.dl ? [del(timedItemKey(keys, runId, deadlineItem, record.dl))] : []),
        // Each node put back loses its own failed mark in step 2; an older store's single mark goes here.
        ...(plan.failed ? [] : [del(keys.legacyFailed(runId))]),
      ],
      result: item,
    };
  });
  await finishRetry(ctx, runId, item);
}

/**
 * Steps 2 to 4 of a marked retry; the sweeper calls this for a retry whose
 * process died, and a cancel for a retry under way. Each put-back compares
 * the run key (unchanged while the run is resuming: no claims, no seal, no
 * cancel mark), so a plan replayed once the run has moved on (its mark
 * cleared, its nodes run again) puts nothing back; the queue keys and the
 * item's removal are safe to repeat.
 */
export async function finishRetry(ctx: EtcdContext, runId: string, item: RetryItem): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  // An older store's item holds its plan; else it is planned again from the run as it stands (see planOf).
  const planned = item.nodes ?? (await replan(ctx, runId, item.named));
  const names = planned.map((n) => n.name);
  for (let i = 0; i < planned.length; i += SETTLE_BATCH) {
    const batch = planned.slice(i, i + SETTLE_BATCH);
    await optimistic(store, `retry of run ${runId}`, async (): Promise<Decision<void>> => {
      const runKv = (await store.retrying('retry', () => store.range({ key: keys.run(runId) }))).kvs[0];
      if (!runKv || !decodeJson<RunRecord>(runKv.value).resuming) return { done: undefined };
      const nodes = await store.retrying('retry', () =>
        readNodes(
          ctx,
          runId,
          batch.map((n) => n.name),
        ),
      );
      const compare: ICompare[] = [modIs(keys.run(runId), runKv.mod_revision)];
      const ops: IRequestOp[] = [];
      batch.forEach((p, j) => {
        const n = nodes[j];
        if (p.status === 'COMPLETED') {
          // Completed again (unreached): not failed any more (as plan.failed counts), and counted from now on
          // by no attempt of before (its retry budget mark), as every backend counts it (completedOutcome).
          ops.push(del(keys.failedNode(runId, p.name)));
          if (n?.rec.s === 'COMPLETED' && (n.rec.rb ?? 0) !== p.attemptsBeforeRetry) {
            compare.push(modIs(keys.node(runId, p.name), n.rev));
            ops.push(put(keys.node(runId, p.name), encodeState(completedAgain(n.rec, p))));
          }
          return;
        }
        // Put back already (a repeat): nothing more to write.
        if (n?.rec.s !== 'COMPLETED') return;
        compare.push(modIs(keys.node(runId, p.name), n.rev));
        ops.push(...putBack(ctx, runId, n.rec, p, now));
      });
      if (ops.length === 0) return { done: undefined };
      return { compare, success: ops, result: undefined };
    });
  }
  await clearResuming(ctx, runId);
  // Queue keys for the nodes still READY and unclaimed (a claim may have come first).
  for (let i = 0; i < names.length; i += SETTLE_BATCH) {
    const batch = names.slice(i, i + SETTLE_BATCH);
    await optimistic(store, `retry of run ${runId}`, async (): Promise<Decision<void>> => {
      const nodes = await store.retrying('retry', () => readNodes(ctx, runId, batch));
      const compare: ICompare[] = [];
      const ops: IRequestOp[] = [];
      for (const n of nodes) {
        if (n?.rec.s !== 'READY') continue;
        compare.push(modIs(keys.node(runId, n.name), n.rev));
        ops.push(put(keys.ready(n.rec.spec.runtime, runId, n.name), Buffer.alloc(0)));
      }
      if (ops.length === 0) return { done: undefined };
      return { compare, success: ops, result: undefined };
    });
  }
  await maybeSeal(ctx, runId);
  await store.retrying('retry', () => store.txn({ success: [del(workItemKey(keys, runId, retryItem))] }));
}

/** Rule 15's plan for this run as it stands: what a retry records, and what finishing it plans again. */
function planOf(runId: string, run: Run, named?: string[]): RetryPlan {
  return planRetry(
    runId,
    run.nodes.map((n) => ({
      name: n.spec.name,
      trigger: n.spec.trigger,
      status: n.status,
      last: n.attempts[n.attempts.length - 1]?.conclusion,
      attempts: n.attempts.length,
      attemptsBeforeRetry: n.attemptsBeforeRetry ?? 0,
    })),
    topology({ nodes: run.nodes.map((n) => n.spec), edges: run.edges }),
    named,
  );
}

/**
 * The plan of a marked retry, planned again from the run: the same plan, as
 * nothing but its own put-backs changes a resuming run (no claims, finishes
 * or seals) and a node put back already is planned as before (it counts as
 * not succeeded, like the node it was; the nodes left alone are as they
 * were). None once the run is gone or no longer resuming: only the item is left to remove.
 */
async function replan(ctx: EtcdContext, runId: string, named?: string[]): Promise<RetriedNode[]> {
  let loaded: Awaited<ReturnType<typeof loadRun>>;
  try {
    loaded = await ctx.store.retrying('retry', () => loadRun(ctx, runId));
  } catch (e) {
    if (e instanceof NotFoundError) return [];
    throw e;
  }
  if (!loaded.record.resuming) return [];
  return planOf(runId, loaded.run, named).nodes;
}

/** A completed node the plan leaves completed (unreached): counted as the plan says, its budget from now. */
function completedAgain(rec: NodeRecord, p: RetriedNode): NodeRecord {
  return {
    ...rec,
    p: rec.up.length - p.tally.succeeded,
    dn: notSucceeded(p),
    f: 0,
    e: 0,
    rb: p.attemptsBeforeRetry,
  };
}

/** The upstream nodes the plan counted in as failed or neither, as a node record keeps them (`dn`). */
function notSucceeded(p: RetriedNode): Record<string, 'f' | 'n'> {
  const dn: Record<string, 'f' | 'n'> = {};
  for (const [u, o] of Object.entries(p.counted)) if (o !== 'succeeded') dn[u] = o === 'failed' ? 'f' : 'n';
  return dn;
}

/** Step 3: clears the run's resuming mark, so claims may start (nothing when it is clear already). */
export async function clearResuming(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  await optimistic(store, `retry of run ${runId}`, async (): Promise<Decision<void>> => {
    const res = await store.retrying('retry', () => store.range({ key: keys.run(runId) }));
    const kv = res.kvs[0];
    if (!kv) return { done: undefined };
    const run = decodeJson<RunRecord>(kv.value);
    if (!run.resuming) return { done: undefined };
    return {
      compare: [modIs(keys.run(runId), kv.mod_revision)],
      success: [put(keys.run(runId), encodeJson({ ...run, resuming: undefined }))],
      result: undefined,
    };
  });
}

/**
 * A completed node as the plan puts it back: counters from its counted upstream
 * nodes, a fresh retry budget, and no failed mark (rule 19: the runs list names
 * it again only if it fails again).
 */
function putBack(
  ctx: EtcdContext,
  runId: string,
  rec: NodeRecord,
  p: RetriedNode,
  now: number,
): IRequestOp[] {
  const { keys } = ctx;
  const next: NodeRecord = {
    ...rec,
    s: p.status,
    p: rec.up.length - p.tally.succeeded,
    dn: notSucceeded(p),
    f: 0,
    e: 0,
    rb: p.attemptsBeforeRetry,
    st: undefined,
    ft: p.status === 'COMPLETED' ? now : undefined,
    c: undefined,
    o: undefined,
    // Rule 5: claimable at once, whatever delay its last retry was waiting out.
    ra: undefined,
  };
  const open = p.status === 'READY' ? 'R' : 'W';
  return [
    put(keys.node(runId, p.name), encodeState(next)),
    put(keys.openNode(open, runId, p.name), Buffer.from(rec.spec.runtime)),
    del(keys.failedNode(runId, p.name)),
    ...(rec.ra ? [del(timedItemKey(keys, runId, retryDueItem(p.name), rec.ra))] : []),
  ];
}
