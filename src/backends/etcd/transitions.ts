import type { ICompare, IRequestOp, IResponseOp } from 'etcd3';
import { rfc3339, shouldRetry, truncateOutput } from '../../model/index.js';
import {
  ClaimConflictError,
  LeaseExpiredError,
  NotFoundError,
  UnavailableError,
} from '../../protocol/errors.js';
import type { ClaimedNode, ClaimRequest, FinishRequest } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { countDown, countedDown, type FanOutItem, fanOut, fanOutItem, INLINE_DEPENDENTS } from './fanout.js';
import { readNode, seenForClaim, seenForFinish } from './node-read.js';
import { encodeState } from './nodes.js';
import {
  attemptOutput,
  type ClaimRecord,
  decodeAttempt,
  encodeAttempt,
  encodeJson,
  type NodeRecord,
  nodeState,
} from './records.js';
import { cascade, maybeSeal, resumeNodeWork } from './settle.js';
import {
  absent,
  del,
  getPrefix,
  isLeaseNotFound,
  isTransient,
  lastUnder,
  leaseIs,
  modIs,
  put,
  valueIs,
} from './store.js';

/**
 * Claim and finish: each one etcd transaction whose compares cover every key
 * it read (the node, the run, the claim key, the dependents), touching the
 * node and its direct dependents only (rule 9). The first try decides on
 * what this process last saw of those keys when it can (node-read.ts), so an
 * uncontended transition is one round trip; a transaction that loses a race
 * re-reads and decides again.
 */

const MAX_ROUNDS = 10_000;
/** Ops a claim transaction may carry, inside etcd's 128. */
const INLINE_READS = 110;

/** Reads that ride along in the claim transaction: upstream outputs (inputs) and earlier attempts. */
function claimReads(ctx: EtcdContext, runId: string, rec: NodeRecord): IRequestOp[] {
  const ops = rec.up.map((u) => lastUnder(ctx.keys.attempts(runId, u)));
  if (rec.a > 0) ops.push(getPrefix(ctx.keys.attempts(runId, rec.spec.name)));
  return ops;
}

function claimedFrom(
  runId: string,
  rec: NodeRecord,
  claim: ClaimRecord,
  responses: IResponseOp[],
  previous?: ClaimRecord,
): ClaimedNode {
  const inputs: Record<string, Uint8Array> = {};
  rec.up.forEach((u, i) => {
    const kv = responses[i]?.response_range.kvs[0];
    inputs[u] = kv ? attemptOutput(kv.value) : new Uint8Array();
  });
  const attempts =
    rec.a > 0 ? responses[rec.up.length]!.response_range.kvs.map((kv) => decodeAttempt(kv.value)) : [];
  return {
    runId,
    claimId: claim.id,
    attempt: rec.a + 1,
    orphan: previous !== undefined,
    previousClaimId: previous?.id,
    previousAgentId: previous?.agent,
    node: nodeState(rec, attempts, inputs, false),
  };
}

/** Rule 2, and rule 3's recovery of an orphan (a RUNNING node whose claim key vanished with its lease). */
export async function claimNode(ctx: EtcdContext, req: ClaimRequest): Promise<ClaimedNode | undefined> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  if (!/^[1-9][0-9]*$/.test(req.leaseId)) throw new LeaseExpiredError(req.leaseId);
  const claim: ClaimRecord = {
    id: ctx.ids.next(now),
    agent: req.agentId,
    md: req.metadata ?? {},
    lease: req.leaseId,
  };
  // Set while a claim transaction with this claim id was sent and no read since told whether it committed.
  let inDoubt = false;
  const claiming = store.retrying('claim', async (attempt) => {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const seen = attempt === 1 && round === 0 ? seenForClaim(ctx, req.runId, req.node) : undefined;
      const r = seen ?? (await readNode(ctx, req.runId, req.node, false));
      inDoubt = false; // what the node holds now (or a first try) says whether an earlier try committed
      if (!r.node) {
        if (!r.run) throw new NotFoundError('run', req.runId);
        throw new NotFoundError('node', `${req.runId}/${req.node}`);
      }
      if (!r.run || r.run.rec.cancelled) return undefined; // not yet committed, or cancelled
      const { rec, rev } = r.node;
      const rt = rec.spec.runtime;
      const claimKey = keys.claim(rt, req.runId, req.node);
      let previous: ClaimRecord | undefined;
      const compare: ICompare[] = [
        modIs(keys.node(req.runId, req.node), rev),
        modIs(keys.run(req.runId), r.run.rev),
      ];
      const next: NodeRecord = { ...rec, c: claim };
      const ops: IRequestOp[] = [];
      if (rec.s === 'READY') {
        next.s = 'RUNNING';
        next.st = now;
        next.ft = undefined;
        ops.push(
          del(keys.ready(rt, req.runId, req.node)),
          put(keys.running(rt, req.runId, req.node), Buffer.alloc(0)),
          del(keys.openNode('R', req.runId, req.node)),
          put(keys.openNode('U', req.runId, req.node), Buffer.from(rt)),
        );
      } else if (rec.s === 'RUNNING' && rec.c) {
        if (r.claimLive) {
          // Our claim id (unique to this call): a try committed whose reply was lost, ours or one the
          // etcd client repeated on its own after a member failed (then the repeat's compare failed).
          if (rec.c.id === claim.id) return ownClaim(ctx, req.runId, rec, claim);
          return undefined;
        }
        previous = rec.c;
        compare.push(absent(claimKey));
      } else return undefined;
      ops.push(
        put(keys.node(req.runId, req.node), encodeState(next)),
        put(claimKey, Buffer.from(claim.id), req.leaseId),
      );
      // A join's inputs may outnumber one transaction's ops: then they are read after the claim
      // (a READY node's upstreams are completed, so their last attempts no longer change).
      const reads = claimReads(ctx, req.runId, rec);
      const inline = reads.length + ops.length <= INLINE_READS;
      let res: Awaited<ReturnType<typeof store.txn>>;
      inDoubt = true;
      try {
        res = await store.txn({ compare, success: inline ? [...reads, ...ops] : ops });
      } catch (e) {
        if (isLeaseNotFound(e)) throw new LeaseExpiredError(req.leaseId);
        throw e;
      }
      if (res.succeeded) {
        ctx.seen.setNode(req.runId, next, res.header.revision);
        const responses = inline ? res.responses : await store.readAll(reads);
        return claimedFrom(req.runId, next, claim, responses, previous);
      }
    }
    throw new UnavailableError(`claim of ${req.runId}/${req.node} kept losing races`);
  });
  try {
    return await claiming;
  } catch (e) {
    if (!inDoubt || !(e instanceof UnavailableError)) throw e;
    return resolveClaim(ctx, req, claim);
  }
}

/**
 * The store went away with a claim transaction in flight. Had it committed,
 * giving up now would leave the node RUNNING under this agent's live lease
 * with nobody running it: never orphaned, never finished. So the outcome is
 * learnt before returning, however long the store takes to come back.
 */
async function resolveClaim(
  ctx: EtcdContext,
  req: ClaimRequest,
  claim: ClaimRecord,
): Promise<ClaimedNode | undefined> {
  ctx.logger.warn('claim outcome unknown; waiting for etcd to learn it', {
    run: req.runId,
    node: req.node,
    claim: claim.id,
  });
  for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
    if (ctx.store.closed) throw new UnavailableError('etcd repository is closed');
    try {
      const r = await readNode(ctx, req.runId, req.node, false);
      const rec = r.node?.rec;
      if (rec?.s !== 'RUNNING' || rec.c?.id !== claim.id || !r.claimLive) return undefined;
      return await ownClaim(ctx, req.runId, rec, claim);
    } catch (e) {
      if (!isTransient(e)) throw e;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** An earlier try of this claim committed but its reply was lost: rebuild what it returned. */
async function ownClaim(
  ctx: EtcdContext,
  runId: string,
  rec: NodeRecord,
  claim: ClaimRecord,
): Promise<ClaimedNode> {
  return claimedFrom(runId, rec, claim, await ctx.store.readAll(claimReads(ctx, runId, rec)));
}

/** Rules 4 and 5: the attempt is recorded only while the claim key still holds this claim under its lease. */
export async function finishNode(ctx: EtcdContext, req: FinishRequest): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const output = Buffer.from(truncateOutput(req.output ?? new Uint8Array()));
  const success = req.conclusion === 'SUCCESS';
  const after = await store.retrying('finish', async (attempt) => {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const seen = attempt === 1 && round === 0 ? seenForFinish(ctx, req, success) : undefined;
      const r = seen ?? (await readNode(ctx, req.runId, req.node, success));
      if (!r.node) {
        if (!r.run) throw new NotFoundError('run', req.runId);
        throw new NotFoundError('node', `${req.runId}/${req.node}`);
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
      ) {
        // An earlier try committed without its reply (ours, or one the etcd client repeated on its own
        // after a member failed): its follow-up work may be undone still.
        if (await alreadyRecorded(ctx, req, rec)) return { resume: true };
        const why = !r.run?.rec.cancelled
          ? r.claimLive === false && c?.id === req.claimId
            ? ', orphaned'
            : ''
          : ', run cancelled';
        throw new ClaimConflictError(
          `claim ${req.claimId} on ${req.runId}/${req.node} is not the node's live claim (node ${rec.s}${why})`,
          req.runId,
          req.node,
        );
      }
      const rt = rec.spec.runtime;
      const claimKey = keys.claim(rt, req.runId, req.node);
      const compare: ICompare[] = [
        modIs(keys.node(req.runId, req.node), rev),
        modIs(keys.run(req.runId), r.run.rev),
        valueIs(claimKey, Buffer.from(c.id)),
        leaseIs(claimKey, c.lease),
      ];
      const previous = [
        ...Array.from({ length: rec.f }, () => ({ conclusion: 'FAIL' as const })),
        ...Array.from({ length: rec.e }, () => ({ conclusion: 'ERROR' as const })),
      ];
      const retry = shouldRetry(rec.spec, req.conclusion, previous);
      const next: NodeRecord = {
        ...rec,
        a: rec.a + 1,
        f: rec.f + (req.conclusion === 'FAIL' ? 1 : 0),
        e: rec.e + (req.conclusion === 'ERROR' ? 1 : 0),
        s: retry ? 'READY' : 'COMPLETED',
        ft: retry ? undefined : now,
        c: undefined,
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
            startedAt: rec.st ? rfc3339(rec.st) : '',
            finishedAt: rfc3339(now),
          }),
        ),
        put(keys.node(req.runId, req.node), encodeState(next)),
        del(claimKey),
        del(keys.running(rt, req.runId, req.node)),
        del(keys.openNode('U', req.runId, req.node)),
      ];
      if (retry)
        ops.push(
          put(keys.openNode('R', req.runId, req.node), Buffer.from(rt)),
          put(keys.ready(rt, req.runId, req.node), Buffer.alloc(0)),
        );
      let allDepsDone = true;
      const counted: NodeRecord[] = [];
      const fanOutLater = success && rec.down.length > INLINE_DEPENDENTS;
      if (fanOutLater) {
        allDepsDone = false;
        ops.push(
          put(
            keys.workItem(req.runId, fanOutItem(req.node)),
            encodeJson({ at: now, done: 0 } satisfies FanOutItem),
          ),
        );
      } else if (success) {
        for (const d of rec.down) {
          const dep = r.deps.get(d);
          if (!dep) throw new NotFoundError('node', `${req.runId}/${d}`);
          if (dep.rec.s === 'COMPLETED') continue; // unreached via another branch: nothing to count down
          allDepsDone = false;
          compare.push(modIs(keys.node(req.runId, d), dep.rev));
          ops.push(...countDown(ctx, req.runId, dep.rec));
          counted.push(dep.rec);
        }
      }
      const failedForGood = !success && !retry;
      if (failedForGood) {
        ops.push(put(keys.failed(req.runId), Buffer.from(req.node)));
        if (rec.down.length > 0)
          ops.push(put(keys.workItem(req.runId, `f:${req.node}`), encodeJson({ at: now, from: rec.down })));
      }
      const res = await store.txn({ compare, success: ops });
      if (res.succeeded) {
        ctx.seen.setNode(req.runId, next, res.header.revision);
        for (const dep of counted) ctx.seen.setNode(req.runId, countedDown(dep), res.header.revision);
        return {
          cascadeFrom: failedForGood && rec.down.length > 0 ? rec.down : undefined,
          fanOut: fanOutLater,
          sealCheck: !retry && allDepsDone,
        };
      }
    }
    throw new UnavailableError(`finish of ${req.runId}/${req.node} kept losing races`);
  });
  // The result is recorded; what follows is durable work (k/ items) that the
  // sweeper of any process completes if this fails, so it never fails the finish.
  try {
    if ('resume' in after) await resumeNodeWork(ctx, req.runId, req.node);
    else {
      if (after.cascadeFrom) await cascade(ctx, req.runId, `f:${req.node}`, after.cascadeFrom);
      if (after.fanOut) await fanOut(ctx, req.runId, req.node);
      if (after.sealCheck || after.cascadeFrom || after.fanOut) await maybeSeal(ctx, req.runId);
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
