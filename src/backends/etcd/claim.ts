import type { ICompare, IRequestOp, IResponseOp } from 'etcd3';
import { claimable, nodeTimeoutMs } from '../../model/index.js';
import {
  keptLosingRaces,
  LeaseExpiredError,
  NotFoundError,
  nodeNotFound,
  UnavailableError,
} from '../../protocol/errors.js';
import type { ClaimedNode, ClaimRequest } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { INLINE_READS } from './limits.js';
import { type Read, readNode, seenForClaim } from './node-read.js';
import { encodeState } from './nodes.js';
import {
  attemptOutput,
  type ClaimRecord,
  decodeAttempt,
  encodeJson,
  type NodeRecord,
  nodeState,
} from './records.js';
import { absent, del, getPrefix, isLeaseNotFound, isTransient, lastUnder, modIs, put } from './store.js';
import { type TimeoutItem, timedItemKey, timeoutItem } from './work-items.js';

/**
 * Claim and finish: each one etcd transaction whose compares cover every key
 * it read (the node, the run, the claim key, the dependents), touching the
 * node and its direct dependents only (rule 9). The first try decides on
 * what this process last saw of those keys when it can (node-read.ts), so an
 * uncontended transition is one round trip; a transaction that loses a race
 * re-reads and decides again.
 */

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
    // From upstream nodes that succeeded only (a trigger may run a node below a failure). One counted in as
    // failed or neither (`dn`) did not, whatever its last attempt: a SUCCESS from before a retry put it back
    // (it then completed unreached) is no input (rule 14).
    if (kv && !rec.dn?.[u] && decodeAttempt(kv.value).conclusion === 'SUCCESS')
      inputs[u] = attemptOutput(kv.value);
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

/** A new claim for this request: its id is the attempt's fencing token and idempotency key. */
export function newClaim(ctx: EtcdContext, req: ClaimRequest, now: number): ClaimRecord {
  if (!/^[1-9][0-9]*$/.test(req.leaseId)) throw new LeaseExpiredError(req.leaseId);
  return { id: ctx.ids.next(now), agent: req.agentId, md: req.metadata ?? {}, lease: req.leaseId };
}

/** What a claim transaction compares and writes, and the reads that ride along. */
export interface ClaimPlan {
  compare: ICompare[];
  ops: IRequestOp[];
  reads: IRequestOp[];
  next: NodeRecord;
  previous?: ClaimRecord;
}

/**
 * Decides a claim on what `r` says: a plan to send; 'own' when the node
 * already holds this very claim (a try committed whose reply was lost, ours
 * or one the etcd client repeated on its own after a member failed); or
 * undefined when the node is not claimable.
 */
export function planClaim(
  ctx: EtcdContext,
  req: ClaimRequest,
  r: Read,
  claim: ClaimRecord,
  now: number,
): ClaimPlan | 'own' | undefined {
  const { keys } = ctx;
  if (!r.node) {
    if (!r.run) throw new NotFoundError('run', req.runId);
    throw nodeNotFound(req.runId, req.node);
  }
  // Not yet committed, cancelled, or a retry still putting its nodes back.
  if (!r.run || r.run.rec.cancelled || r.run.rec.resuming) return undefined;
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
    if (!claimable(rec.ra, now)) return undefined; // waiting out its retry delay (rule 5)
    next.s = 'RUNNING';
    next.ra = undefined;
    next.st = now;
    next.ft = undefined;
    ops.push(
      del(keys.ready(rt, req.runId, req.node)),
      put(keys.running(rt, req.runId, req.node), Buffer.alloc(0)),
      del(keys.openNode('R', req.runId, req.node)),
      put(keys.openNode('U', req.runId, req.node), Buffer.from(rt)),
    );
    // Rule 11: the store ends this attempt when its timeout passes (timing.ts), unless it finished.
    const timeoutMs = nodeTimeoutMs(rec.spec);
    if (timeoutMs !== undefined)
      ops.push(
        put(
          timedItemKey(keys, req.runId, timeoutItem(req.node), now + timeoutMs),
          encodeJson({ at: now, due: now + timeoutMs, claim: claim.id } satisfies TimeoutItem),
        ),
      );
  } else if (rec.s === 'RUNNING' && rec.c) {
    if (r.claimLive) return rec.c.id === claim.id ? 'own' : undefined;
    previous = rec.c;
    compare.push(absent(claimKey));
  } else return undefined;
  ops.push(
    put(keys.node(req.runId, req.node), encodeState(next)),
    put(claimKey, Buffer.from(claim.id), req.leaseId),
  );
  return { compare, ops, reads: claimReads(ctx, req.runId, rec), next, previous };
}

/** The claimed node from a committed plan and the responses of its reads. */
export function claimedByPlan(
  ctx: EtcdContext,
  req: ClaimRequest,
  claim: ClaimRecord,
  plan: ClaimPlan,
  revision: string,
  responses: IResponseOp[],
): ClaimedNode {
  ctx.seen.setNode(req.runId, plan.next, revision);
  return claimedFrom(req.runId, plan.next, claim, responses, plan.previous);
}

export interface ClaimOptions {
  /** The claim to make (a batch that could not tell its outcome hands its claim on). */
  claim?: ClaimRecord;
  /** Decide on a fresh read even on the first try (what this process saw proved stale). */
  fresh?: boolean;
  /** A transaction with this claim may have committed unseen. */
  inDoubt?: boolean;
}

/** Rule 2, and rule 3's recovery of an orphan (a RUNNING node whose claim key vanished with its lease). */
export async function claimNode(
  ctx: EtcdContext,
  req: ClaimRequest,
  options: ClaimOptions = {},
): Promise<ClaimedNode | undefined> {
  const { store } = ctx;
  const now = ctx.clock.now();
  const claim = options.claim ?? newClaim(ctx, req, now);
  // Set while a claim transaction with this claim id was sent and no read since told whether it committed.
  let inDoubt = options.inDoubt ?? false;
  const claiming = store.retrying('claim', async (attempt) => {
    for (let round = 0; round < store.maxRaceRounds; round++) {
      const first = attempt === 1 && round === 0 && !options.fresh;
      const seen = first ? seenForClaim(ctx, req.runId, req.node) : undefined;
      const r = seen ?? (await readNode(ctx, req.runId, req.node, 'if-known'));
      inDoubt = false; // what the node holds now (or a first try) says whether an earlier try committed
      const plan = planClaim(ctx, req, r, claim, now);
      if (plan === 'own') return ownClaim(ctx, req.runId, r.node!.rec, claim);
      if (!plan) return undefined;
      // A join's inputs may outnumber one transaction's ops: then they are read after the claim
      // (a READY node's upstreams are completed, so their last attempts no longer change).
      const inline = plan.reads.length + plan.ops.length <= INLINE_READS;
      let res: Awaited<ReturnType<typeof store.txn>>;
      inDoubt = true;
      try {
        res = await store.txn({
          compare: plan.compare,
          success: inline ? [...plan.reads, ...plan.ops] : plan.ops,
        });
      } catch (e) {
        if (isLeaseNotFound(e)) throw new LeaseExpiredError(req.leaseId);
        throw e;
      }
      if (res.succeeded) {
        const responses = inline ? res.responses : await store.readAll(plan.reads);
        return claimedByPlan(ctx, req, claim, plan, res.header.revision, responses);
      }
    }
    throw keptLosingRaces(`claim of ${req.runId}/${req.node}`, store.maxRaceRounds);
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
