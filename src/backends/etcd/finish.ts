import type { ICompare, IRequestOp } from 'etcd3';
import {
  attemptOutput,
  attemptStartMs,
  countAttempt,
  finishOutcome,
  nextAttemptAt,
  rfc3339,
  statusAfterFinish,
  truncateOutput,
} from '../../model/index.js';
import { claimNotLive, keptLosingRaces, NotFoundError, nodeNotFound } from '../../protocol/errors.js';
import type { FinishRequest } from '../../protocol/repository.js';
import { cascade } from './cascade.js';
import type { EtcdContext } from './context.js';
import { fanOut } from './fanout.js';
import { INLINE_DEPENDENTS } from './limits.js';
import { type Read, readNode, seenForFinish } from './node-read.js';
import { encodeState } from './nodes.js';
import { dropStreamed, readStreamed } from './output.js';
import { decodeAttempt, encodeAttempt, encodeJson, type NodeRecord } from './records.js';
import { releaseWhenDue } from './retry-due.js';
import { maybeSeal, sealProbe, witnessOpen } from './seal.js';
import { del, leaseIs, modIs, put, valueIs } from './store.js';
import { resumeNodeWork } from './sweep.js';
import { settle } from './triggers.js';
import {
  type CascadeItem,
  cascadeItem,
  dropTimeout,
  type FanOutItem,
  fanOutItem,
  type RetryDueItem,
  retryDueItem,
  timedItemKey,
  workItemKey,
} from './work-items.js';

/**
 * Rules 4 and 5 on etcd: the attempt is recorded only while the claim key
 * still holds this claim under its lease, in one transaction with the node's
 * new state and its dependents' counters (rule 9); then durable follow-up
 * work (a wide fan-out, an unreached cascade, sealing the run).
 */

/** What is left to do once the finish committed. */
export type FinishAfter = { resume: true } | PlannedAfter;

/** retryAt: the node waits out a retry delay until then (ms); this process releases it when due. */
export type PlannedAfter = {
  cascades: [string, CascadeItem][];
  fanOut: boolean;
  sealCheck: boolean;
  retryAt?: number;
};

export interface FinishPlan {
  compare: ICompare[];
  ops: IRequestOp[];
  next: NodeRecord;
  /** Dependents counted down, as they are after. */
  counted: NodeRecord[];
  after: PlannedAfter;
}

/**
 * The finish transaction as `r` says it should be, or 'stale' when `r` shows
 * the node no longer RUNNING under this live claim (the caller then learns
 * whether this very result was recorded already).
 */
export function planFinish(
  ctx: EtcdContext,
  req: FinishRequest,
  r: Read,
  now: number,
  output: Buffer,
): FinishPlan | 'stale' {
  const { keys } = ctx;
  const success = req.conclusion === 'SUCCESS';
  if (!r.node) {
    if (!r.run) throw new NotFoundError('run', req.runId);
    throw nodeNotFound(req.runId, req.node);
  }
  const { rec, rev } = r.node;
  const c = rec.c;
  if (
    rec.s !== 'RUNNING' ||
    !c ||
    c.id !== req.claimId ||
    !r.claimLive ||
    r.claimValue !== c.id ||
    !r.run ||
    r.run.rec.cancelled
  )
    return 'stale';
  const rt = rec.spec.runtime;
  const claimKey = keys.claim(rt, req.runId, req.node);
  const compare: ICompare[] = [
    modIs(keys.node(req.runId, req.node), rev),
    modIs(keys.run(req.runId), r.run.rev),
    valueIs(claimKey, Buffer.from(c.id)),
    leaseIs(claimKey, c.lease),
  ];
  const outcome = finishOutcome(rec.spec, req.conclusion, { fail: rec.f, error: rec.e });
  const retry = outcome === 'RETRY';
  // Rule 5's delay: a retry with a backoff is READY but announced (its queue key written) only when due.
  const retryAt =
    retry && req.conclusion !== 'SUCCESS'
      ? nextAttemptAt(rec.spec, req.conclusion, { fail: rec.f, error: rec.e }, now)
      : 0;
  const counts = countAttempt({ fail: rec.f, error: rec.e }, req.conclusion);
  const next: NodeRecord = {
    ...rec,
    a: rec.a + 1,
    f: counts.fail,
    e: counts.error,
    s: statusAfterFinish(outcome),
    ft: retry ? undefined : now,
    c: undefined,
    o: undefined,
    ra: retryAt || undefined,
  };
  const ops: IRequestOp[] = [
    put(
      keys.attempt(req.runId, req.node, next.a),
      encodeAttempt({
        conclusion: req.conclusion,
        metadata: req.metadata ?? {},
        output,
        claimId: c.id,
        agentId: c.agent,
        startedAt: rec.st ? rfc3339(attemptStartMs(rec.st, now, req.startedAt)) : '',
        finishedAt: rfc3339(now),
      }),
    ),
    put(keys.node(req.runId, req.node), encodeState(next)),
    del(claimKey),
    del(keys.running(rt, req.runId, req.node)),
    del(keys.openNode('U', req.runId, req.node)),
    ...dropStreamed(ctx, req.runId, rec),
    // The attempt ended: its timeout item (rule 11) has nothing left to do.
    ...dropTimeout(keys, req.runId, req.node, rec),
  ];
  if (retry)
    ops.push(
      put(keys.openNode('R', req.runId, req.node), Buffer.from(rt)),
      retryAt
        ? put(
            timedItemKey(keys, req.runId, retryDueItem(req.node), retryAt),
            encodeJson({ at: now, due: retryAt } satisfies RetryDueItem),
          )
        : put(keys.ready(rt, req.runId, req.node), Buffer.alloc(0)),
    );
  let allDepsDone = true;
  const counted: NodeRecord[] = [];
  const cascades: [string, CascadeItem][] = [];
  const fanOutLater = success && rec.down.length > INLINE_DEPENDENTS;
  if (fanOutLater) {
    allDepsDone = false;
    ops.push(
      put(
        workItemKey(keys, req.runId, fanOutItem(req.node)),
        encodeJson({ at: now, done: 0 } satisfies FanOutItem),
      ),
    );
  } else if (success) {
    for (const d of rec.down) {
      const dep = r.deps.get(d);
      if (!dep) throw nodeNotFound(req.runId, d);
      const settled = settle(ctx, req.runId, dep.rec, req.node, 'succeeded', now);
      if (!settled) continue; // unreached via another branch: nothing to count down
      // One that completed (unreached) leaves the run as done as it was; its downstream, if any, cascade.
      if (settled.next.s !== 'COMPLETED') allDepsDone = false;
      compare.push(modIs(keys.node(req.runId, d), dep.rev));
      ops.push(...settled.ops);
      counted.push(settled.next);
      if (settled.unreached) cascades.push([d, settled.unreached]);
    }
  }
  const failedForGood = outcome === 'FAILED';
  if (failedForGood) {
    ops.push(put(keys.failedNode(req.runId, req.node), Buffer.from(req.node)));
    if (rec.down.length > 0) {
      const item: CascadeItem = { at: now, from: rec.down, o: 'f' };
      ops.push(put(workItemKey(keys, req.runId, cascadeItem(req.node)), encodeJson(item)));
      cascades.push([req.node, item]);
    }
  }
  const after = {
    cascades,
    fanOut: fanOutLater,
    sealCheck: !retry && allDepsDone,
    ...(retryAt ? { retryAt } : {}),
  };
  return { compare, ops, next, counted, after };
}

/** A committed plan: remember what it wrote (SeenState), say what is left to do. */
export function committed(
  ctx: EtcdContext,
  req: FinishRequest,
  plan: FinishPlan,
  revision: string,
): FinishAfter {
  ctx.seen.setNode(req.runId, plan.next, revision);
  for (const dep of plan.counted) ctx.seen.setNode(req.runId, dep, revision);
  return plan.after;
}

/** The follow-up of a committed finish whose seal probe found its witness open: no seal check (seal.ts). */
export function withProbe(after: FinishAfter, witnessStillOpen: boolean): FinishAfter {
  return witnessStillOpen && !('resume' in after) ? { ...after, sealCheck: false } : after;
}

export interface FinishOptions {
  /** Decide on a fresh read even on the first try (what this process saw proved stale). */
  fresh?: boolean;
  /** A transaction with this result may have committed unseen (a batch that failed or threw). */
  inDoubt?: boolean;
}

export async function finishNode(
  ctx: EtcdContext,
  req: FinishRequest,
  options: FinishOptions = {},
): Promise<void> {
  const { store } = ctx;
  const now = ctx.clock.now();
  const output = finishOutput(req);
  const success = req.conclusion === 'SUCCESS';
  const after = await store.retrying('finish', async (attempt) => {
    for (let round = 0; round < store.maxRaceRounds; round++) {
      const first = attempt === 1 && round === 0 && !options.fresh;
      const seen = first ? seenForFinish(ctx, req, success) : undefined;
      const r = seen ?? (await readNode(ctx, req.runId, req.node, success));
      // What the attempt streamed comes first; the node key's compare pins the chunks read.
      const streamed = r.node?.rec.o ? await readStreamed(ctx, req.runId, r.node.rec) : undefined;
      const recorded = streamed ? Buffer.from(attemptOutput(streamed, output)) : output;
      const plan = planFinish(ctx, req, r, now, recorded);
      if (plan === 'stale') {
        // An earlier try committed without its reply (ours, or one the etcd client repeated on its own
        // after a member failed): its follow-up work may be undone still.
        // Only when this call may itself have committed: a second finish with a spent claim is refused
        // even when it repeats the recorded conclusion (rule 4).
        const mayHaveCommitted = attempt > 1 || round > 0 || options.inDoubt === true;
        if (mayHaveCommitted && (await alreadyRecorded(ctx, req, r.node!.rec)))
          return { resume: true } as const;
        throw notLive(req, r);
      }
      const probe = plan.after.sealCheck ? sealProbe(ctx, req.runId, new Set([req.node])) : undefined;
      const res = await store.txn({
        compare: plan.compare,
        success: probe ? [...plan.ops, probe.op] : plan.ops,
      });
      if (res.succeeded)
        return withProbe(
          committed(ctx, req, plan, res.header.revision),
          probe !== undefined && witnessOpen(ctx, req.runId, probe, res.responses[plan.ops.length]),
        );
    }
    throw keptLosingRaces(`finish of ${req.runId}/${req.node}`, store.maxRaceRounds);
  });
  await followUp(ctx, req, after);
}

export const finishOutput = (req: FinishRequest): Buffer =>
  Buffer.from(truncateOutput(req.output ?? new Uint8Array()));

function notLive(req: FinishRequest, r: Read) {
  const rec = r.node!.rec;
  const cancelled = r.run?.rec.cancelled === true;
  return claimNotLive(req, {
    status: rec.s,
    orphaned: !cancelled && r.claimLive === false && rec.c?.id === req.claimId,
    cancelled,
  });
}

/**
 * The result is recorded; what follows is durable work (k/ items) that the
 * sweeper of any process completes if this fails, so it never fails the finish.
 */
export async function followUp(ctx: EtcdContext, req: FinishRequest, after: FinishAfter): Promise<void> {
  try {
    if ('resume' in after) await resumeNodeWork(ctx, req.runId, req.node);
    else {
      for (const [origin, item] of after.cascades) await cascade(ctx, req.runId, origin, item);
      if (after.fanOut) await fanOut(ctx, req.runId, req.node);
      if (after.sealCheck || after.cascades.length > 0 || after.fanOut) await maybeSeal(ctx, req.runId);
      if (after.retryAt) releaseWhenDue(ctx, req.runId, req.node, after.retryAt);
    }
  } catch (e) {
    ctx.logger.warn('follow-up of a finish left to the sweeper', {
      run: req.runId,
      node: req.node,
      error: (e as Error).message,
    });
  }
}

/** After a lost reply: is this claim's attempt, with this conclusion, the one recorded? */
async function alreadyRecorded(ctx: EtcdContext, req: FinishRequest, rec: NodeRecord): Promise<boolean> {
  if (rec.a === 0) return false;
  const res = await ctx.store.range({ key: ctx.keys.attempt(req.runId, req.node, rec.a) });
  const kv = res.kvs[0];
  if (!kv) return false;
  const a = decodeAttempt(kv.value);
  return a.claimId === req.claimId && a.conclusion === req.conclusion;
}
