import { randomUUID } from 'node:crypto';
import {
  attemptStartMs,
  boundedAppend,
  checkConclusion,
  checkHandOff,
  checkMetadata,
  checkNodeName,
  checkRunId,
  checkStartedAt,
  countAttempt,
  finishOutcome,
  type RunConclusion,
  runStatus,
  statusAfterFinish,
  truncateOutput,
  upstreamOutcome,
} from '../../model/index.js';
import {
  ClaimConflictError,
  claimNotLive,
  type FinishRequest,
  type FinishResult,
  finishedAlone,
  UnavailableError,
} from '../../protocol/index.js';
import { Batcher, BatchNotCommitted } from '../batcher.js';
import { Delta, type DynamoContext, emitNode, emitReady } from './context.js';
import { type Item, type Key, mk, type Tx } from './db.js';
import {
  addHandOffs,
  giveBackHandOffs,
  type HandOffPlan,
  handedOff,
  handedOffMark,
  recoverHandOffs,
  takeHandOffs,
} from './hand-off.js';
import {
  addToHeader,
  decodeNode,
  decodeRun,
  encodeNode,
  encodeOutput,
  FINISH_SEQ,
  headerKey,
  moved,
  type NodeData,
  type NodeItem,
  next,
  nodeKey,
  type RecordedInput,
  type RunData,
  type RunItem,
  recordAttempt,
  runAndNode,
  unreadHeader,
} from './items.js';
import {
  BATCH_FINISH_ITEMS,
  BATCH_WINDOW_MS,
  DYNAMODB_MAX_TXN_ITEMS,
  FINISH_ITEMS,
  INLINE_DEPENDENTS,
  MAX_TXN_BYTES,
  OUTPUT_PART_BYTES,
} from './limits.js';
import { emitSealed, sealRun } from './seal.js';
import { addJudged, drainSettles, encodeSettle, judge, type SettleWork } from './settle.js';
import { delayRetry, disarmTimeout } from './timers.js';

/**
 * Rules 4 and 5: one transaction appends the attempt (and its output parts),
 * moves the node on, releases the claim, updates the run header (completing
 * the run when this was its last open node) and judges up to
 * INLINE_DEPENDENTS dependents; it is conditioned on the node's version as
 * read, which holds the claim (the fence of rule 4), and the header's (a
 * cancel refuses the finish). More dependents go to a settle work item.
 */
export async function finishNode(
  ctx: DynamoContext,
  req: FinishRequest,
  tried = false,
  nonce: string = randomUUID(),
): Promise<FinishResult> {
  checkFinish(req);
  for (;;) {
    const remembered = new Set<string>();
    const read = await readForFinish(ctx, [req], tried, remembered);
    const plan = await planFinish(ctx, req, read, tried, nonce);
    if ('recovered' in plan) return { handedOff: await recoverHandOffs(ctx, req.runId, plan.recovered) };
    const sealed = addToHeader(
      plan.tx,
      req.runId,
      plan.header.before,
      plan.header.after,
      true,
      sealOf(plan.seal, plan.header, ctx.clock.now()),
    );
    plan.delta.addTo(plan.tx);
    const records = addHandOffs(ctx, plan.tx, plan.handOff ? [plan.handOff] : []);
    tried = true;
    let refused: Key[] = [];
    if (!(await ctx.db.commit(plan.tx, (keys) => (refused = keys)))) {
      // Goes again reading everything, recognising its own commit should a retry of the request have been
      // refused by it (DynamoDB Local forgets request tokens when it restarts); what it remembered is stale.
      forgetStale(ctx, refused, remembered);
      continue;
    }
    for (const r of records) ctx.claimRecords.track(r.key, r.claimIds);
    await plan.after();
    if (sealed) emitSealed(ctx, req.runId, sealed);
    else if (plan.seal) await sealRun(ctx, req.runId);
    return { handedOff: await handedOff(ctx, plan.handOff) };
  }
}

function checkFinish(req: FinishRequest): void {
  checkRunId(req.runId);
  checkNodeName(req.node);
  checkConclusion(req.conclusion);
  checkMetadata(req.metadata);
  checkStartedAt(req.startedAt);
  if (req.handOff) checkHandOff(req.handOff);
}

/**
 * How long a dependent this process wrote stays a finish's view of it: long
 * enough for a run's next finish (its upstream nodes run within moments of
 * each other), and no longer, as another process may write it since (its
 * finish of another upstream node, a cancel, a retry). Then the commit is
 * refused and the finish goes again reading everything; a batch refused
 * for such dependents only goes again whole (FinishBatcher.send), not call
 * by call.
 */
const DEPENDENT_FRESH_MS = 5_000;

/**
 * What finishes read first, in one round trip: each node (unless this
 * process holds it as its claim wrote it, and the call is not retrying after
 * a refused commit), the header (unless no finish of that run needs it:
 * needsHeader), and the dependents this process knows from the claim
 * (unless it wrote them lately and they are WAITING, on a first try).
 */
async function readForFinish(
  ctx: DynamoContext,
  reqs: FinishRequest[],
  tried: boolean,
  /** Gets the keys of the dependents taken from memory. */
  remembered?: Set<string>,
): Promise<Map<string, Item>> {
  const held = new Map<string, Item>();
  const keys: Key[] = [];
  const headers = new Set(reqs.filter((r) => tried || needsHeader(ctx, r)).map((r) => r.runId));
  for (const req of reqs) {
    const key = nodeKey(req.runId, req.node);
    const node = tried
      ? undefined
      : ctx.nodes.take(
          key,
          (d) => d.status === 'RUNNING' && d.claim?.id === req.claimId && !d.claim.orphaned,
        );
    if (node) held.set(mk(key), node);
    else keys.push(key);
    const known = ctx.downstream.get(req.runId, req.node);
    const prefetch = known && known.length <= INLINE_DEPENDENTS ? known : [];
    if (headers.has(req.runId)) keys.push(headerKey(req.runId));
    for (const n of prefetch) {
      const dk = nodeKey(req.runId, n);
      // A dependent as this process wrote it lately (its start, or the finish of another of its upstream
      // nodes), still WAITING: judged from that. Written since by another process, the commit is refused.
      const dep = tried ? undefined : ctx.nodes.take(dk, (d) => d.status === 'WAITING', DEPENDENT_FRESH_MS);
      if (dep) {
        held.set(mk(dk), dep);
        remembered?.add(mk(dk));
      } else keys.push(dk);
    }
  }
  const read = await ctx.waiting.read(ctx.db, keys);
  // A node read (a dependent of another finish in the batch) is fresher than one held (or it is the same).
  for (const [k, item] of held) if (!read.has(k)) read.set(k, item);
  return read;
}

/**
 * Whether a finish needs its run's header read: it does unless it succeeded
 * and left dependents this process knows of (at most INLINE_DEPENDENTS) to
 * judge. Such a finish completes its node, so the run is RUNNING after it
 * unless every node is then completed, which only dependents completed
 * unreached (before or by this finish) allow: then sealRun reads the header
 * after the commit. Its header change is additions conditioned on the run
 * existing and not being cancelled, so a cancel refuses the commit (and the
 * batch it went in: each call then goes alone, reading the header, which
 * answers why; cancels are rare beside finishes). A success at the run's end
 * (no dependents), a failure and a retry read it: their counts may seal the
 * run in the finish's own header change, their marks and statuses come from it.
 */
function needsHeader(ctx: DynamoContext, req: FinishRequest): boolean {
  const down = ctx.downstream.get(req.runId, req.node);
  return req.conclusion !== 'SUCCESS' || !down || down.length === 0 || down.length > INLINE_DEPENDENTS;
}

/**
 * After a refused commit: forgets the dependents taken from memory that
 * DynamoDB named as failing their condition (another process judged them
 * since). Whether those were all it named.
 */
function forgetStale(ctx: DynamoContext, refused: Key[], remembered: Set<string>): boolean {
  for (const k of refused) if (remembered.has(mk(k))) ctx.nodes.forget(k);
  return refused.length > 0 && refused.every((k) => remembered.has(mk(k)));
}

/** A finish decided: its writes (without the stats counters), their counter changes, and what follows its commit. */
interface FinishPlan {
  tx: Tx;
  delta: Delta;
  /**
   * The run header as read and after this finish: added to the transaction per run (addToHeader).
   * `unread`: not read (needsHeader): the counts are this plan's moves only, and no seal goes in the change.
   */
  header: { runId: string; before: RunData; after: RunData; read: RunItem; unread: boolean };
  after: () => Promise<void>;
  /**
   * Whether the run may be complete after this commit: the node completed and
   * left no dependent open (one left READY or WAITING under its version means
   * the run cannot be complete: its own transition will look). Then the
   * header change seals the run if the counts read say every node completed
   * (addToHeader's `seal`), else, after the commit, sealRun reads the header and
   * seals it if so (once per run in a batch).
   */
  seal: boolean;
  /** Rule 21: the dependents claimed for the finishing process. */
  handOff?: HandOffPlan;
  /** The dependents' writes, as committed unless a later finish of the run in the batch judged them again. */
  judged: NodeItem[];
}

/** A finish retried in doubt that found its own commit: the claims it handed off then (`ho`). */
type Recovered = { recovered: [string, string][] | undefined };

/**
 * Decides a finish from what was read (`tried`: a commit of this call whose
 * outcome is unknown was sent; the node's last attempt under this claim says
 * it landed, and the finish is done).
 */
async function planFinish(
  ctx: DynamoContext,
  req: FinishRequest,
  read: Map<string, Item>,
  tried: boolean,
  /** This call's own mark on the attempt it records (`lf`), so a retry in doubt recognises its own commit. */
  nonce: string,
): Promise<FinishPlan | Recovered> {
  const output = req.output ?? new Uint8Array();
  // Not asked for (needsHeader), so not read: a header asked for and missing is a run gone.
  const unread = !tried && !needsHeader(ctx, req) && !read.has(mk(headerKey(req.runId)));
  const { header, node } = runAndNode(
    read,
    req.runId,
    req.node,
    unread ? unreadHeader(req.runId) : undefined,
  );
  const claim = node.d.claim;
  // Ours only if this very call wrote it: another finish under the same claim (a timeout's) is not.
  if (tried && node.d.lastClaim === req.claimId && (node.d.lf === undefined || node.d.lf === nonce))
    return { recovered: node.d.ho };
  if (node.d.status !== 'RUNNING' || claim?.id !== req.claimId || claim.orphaned || header.d.cancelled) {
    // Refused either way; an unread header is read for the answer's sake (a cancel took the node, say).
    const run = unread ? await ctx.db.get(headerKey(req.runId)) : undefined;
    throw claimNotLive(req, {
      status: node.d.status,
      orphaned: claim?.id === req.claimId && claim.orphaned,
      cancelled: run ? decodeRun(run).d.cancelled : header.d.cancelled,
    });
  }
  const now = ctx.clock.now();
  const outcome = finishOutcome(node.d.spec, req.conclusion, node.d.retries);
  const attempt = node.d.attempts + 1;
  // What was streamed stays in its parts; the finish's output follows it within the cap (rule 10).
  const tail = node.d.live > 0 ? boundedAppend(node.d.live, output) : truncateOutput(output);
  const d: NodeData = {
    ...node.d,
    attempts: attempt,
    last: req.conclusion,
    lastClaim: req.claimId,
    lf: nonce,
    ho: undefined,
    retries: countAttempt(node.d.retries, req.conclusion),
    claim: undefined,
    status: statusAfterFinish(outcome),
    seq: 0,
    live: 0,
    out: node.d.live + tail.byteLength,
  };
  if (d.status === 'COMPLETED') d.finishedAt = now;
  const tx = ctx.db.tx();
  if (d.status === 'READY' && req.conclusion !== 'SUCCESS')
    delayRetry(tx, d, node.d.retries, req.conclusion, req.runId, now);
  disarmTimeout(tx, node.d, req.runId, claim.id);
  const hd = structuredClone(header.d);
  const delta = new Delta();
  moved(hd, 'RUNNING', d.status);
  delta.move('RUNNING', d.status);
  if (outcome === 'FAILED') {
    hd.failed = true;
    hd.failedNodes = [...(hd.failedNodes ?? []), req.node];
  }
  recordAttempt(tx, req.runId, node.d, d, {
    conclusion: req.conclusion,
    metadata: req.metadata ?? {},
    claimId: claim.id,
    agentId: claim.agentId,
    startedAt: attemptStartMs(node.d.startedAt, now, req.startedAt),
    finishedAt: now,
  });
  for (const part of encodeOutput(req.runId, d.i, attempt, FINISH_SEQ, tail, OUTPUT_PART_BYTES))
    tx.put(part, 'any');
  let spawned: SettleWork[] = [];
  let judged: NodeItem[] = [];
  let handOff: HandOffPlan | undefined;
  if (outcome !== 'RETRY' && d.down.length > 0) {
    const o = upstreamOutcome(req.conclusion);
    // Rule 2: a success is its dependents' input; recorded on them, their claims need not read this node.
    const input: RecordedInput | undefined =
      req.conclusion === 'SUCCESS' ? [d.i, attempt, d.out === 0 ? 1 : 0] : undefined;
    if (d.down.length <= INLINE_DEPENDENTS) {
      const keys = d.down.map((n) => nodeKey(req.runId, n));
      // What was read (or, in a batch, written by an earlier finish of the run) stands; the rest is read now.
      const missing = keys.filter((k) => !read.has(mk(k)));
      const fetched = missing.length > 0 ? await ctx.waiting.read(ctx.db, missing) : read;
      const deps = keys
        .map((k) => read.get(mk(k)) ?? fetched.get(mk(k)))
        .filter((x) => x !== undefined)
        .map(decodeNode);
      const j = judge(deps, { name: req.node, outcome: o, input }, hd, delta, now);
      // Rule 21, on a first try only: one refused (a lapsed lease, say) goes again without.
      if (req.handOff && !tried)
        handOff = takeHandOffs(ctx, req.runId, j.writes, req.handOff, hd, delta, now);
      if (handOff) d.ho = handedOffMark(handOff);
      addJudged(tx, j);
      judged = j.writes;
      spawned = j.spawned;
    } else {
      const w: SettleWork = { run: req.runId, node: req.node, outcome: o, cursor: 0, input };
      tx.put(encodeSettle(w), 'any');
      spawned = [w];
    }
  }
  // Written after the dependents are judged: it names the claims handed off.
  const written = encodeNode(next(node, d));
  tx.putNode(written, node.v);
  return {
    tx,
    delta,
    handOff,
    judged,
    header: { runId: req.runId, before: header.d, after: hd, read: header, unread },
    after: async () => {
      ctx.claimRecords.ended(req.claimId);
      ctx.nodes.put(written);
      // Still WAITING, a join's next upstream judges it from here (READY and handed-off ones are put as announced).
      for (const w of judged) if (w.d.status === 'WAITING') ctx.nodes.put(encodeNode(w));
      // Unread, the counts are moves only: this success left its run RUNNING (one node completed), unless
      // it was the run's last open node (then sealRun, below, tells watchers it completed).
      const status = unread ? 'RUNNING' : runStatus(hd.counts);
      emitNode(ctx, next(node, d), status);
      for (const w of judged) emitNode(ctx, w, status);
      if (d.status === 'READY') emitReady(ctx, next(node, d));
      for (const w of judged) if (w.d.status === 'READY') emitReady(ctx, w);
      ctx.bus.emit('run', req.runId);
      if (spawned.length > 0) await drainSettles(ctx, spawned);
    },
    seal: d.status === 'COMPLETED' && !judged.some((w) => w.d.status !== 'COMPLETED'),
  };
}

interface Call {
  req: FinishRequest;
  /** Sent in a batch whose outcome is unknown: alone, it recognises its own commit. */
  tried: boolean;
  nonce: string;
}

/**
 * This process's concurrent finishes as one TransactWriteItems (see
 * Batcher): one read of every call's node, known dependents and header (as
 * needsHeader asks), each
 * planned as above, their items side by side, one header update per run and
 * their counter changes in one stats shard. Finishes of one run in a batch
 * are planned one after the other, each from what the ones before it wrote:
 * two that judge one dependent (the two upstream nodes of a join) judge it
 * together, one write of it and one header update for both. One failed
 * condition cancels the whole transaction: then each call goes again alone,
 * reading afresh (and recognising its own attempt, should the batch have
 * committed after all). A finish with large output goes alone.
 */
export class FinishBatcher {
  private readonly batcher: Batcher<Call, Outcome>;

  constructor(private readonly ctx: DynamoContext) {
    this.batcher = new Batcher(
      {
        maxCalls: 32,
        maxWeight: BATCH_FINISH_ITEMS,
        weight: (c) => finishItems(ctx, c.req),
        // One finish of a node per batch; finishes of one run share one (see send).
        key: (c) => `${c.req.runId}\u0000${c.req.node}`,
        isolate: (e) => e instanceof BatchNotCommitted,
        busyWindowMs: BATCH_WINDOW_MS,
      },
      (calls) => this.send(calls),
    );
  }

  async finish(req: FinishRequest): Promise<FinishResult> {
    checkFinish(req);
    let result: FinishResult;
    // A repeat of a finish that failed in doubt goes with that call's mark, so it recognises its commit.
    const doubt = this.inDoubt.get(req.claimId);
    const nonce = doubt ?? randomUUID();
    try {
      if (
        doubt !== undefined ||
        (req.output?.byteLength ?? 0) > BATCHED_OUTPUT_BYTES ||
        finishItems(this.ctx, req) > BATCH_FINISH_ITEMS
      )
        result = await finishNode(this.ctx, req, doubt !== undefined, nonce);
      else {
        const outcome = await this.batcher.submit({ req, tried: false, nonce });
        if ('error' in outcome) throw outcome.error;
        result = outcome.result;
      }
      this.inDoubt.delete(req.claimId);
    } catch (e) {
      // Refused as not live: the claim ended all the same (its record may go).
      if (e instanceof ClaimConflictError) this.ctx.claimRecords.ended(req.claimId);
      // The commit may have landed with claims handed off (rule 21): a store error is repeated by the
      // caller, whose repeat answers them; after any other, nobody would, so they are given back.
      if (e instanceof UnavailableError && req.handOff) this.remember(req.claimId, nonce);
      else {
        this.inDoubt.delete(req.claimId);
        if (req.handOff && !(e instanceof ClaimConflictError)) giveBackHandOffs(this.ctx, req, nonce);
      }
      throw e;
    }
    this.ctx.claimRecords.ended(req.claimId);
    return result;
  }

  /** Finishes failed in doubt, by claim id: their marks (`lf`), for their repeats. */
  private readonly inDoubt = new Map<string, string>();

  private remember(claimId: string, nonce: string): void {
    this.inDoubt.delete(claimId);
    this.inDoubt.set(claimId, nonce);
    // Bounded: an agent repeats a finish within seconds, or never.
    if (this.inDoubt.size > 10_000) this.inDoubt.delete(this.inDoubt.keys().next().value!);
  }

  /** `again`: the batch was refused for remembered dependents only, and goes once more, reading everything. */
  private async send(calls: Call[], again = false): Promise<Outcome[]> {
    if (calls.length === 1) {
      const c = calls[0]!;
      return [await settled(finishNode(this.ctx, c.req, c.tried, c.nonce))];
    }
    const remembered = new Set<string>();
    const read = await readForFinish(
      this.ctx,
      calls.map((c) => c.req),
      calls.some((c) => c.tried),
      remembered,
    );
    const outcomes: Outcome[] = calls.map(() => ({ result: finishedAlone() }));
    const plan = async (i: number): Promise<FinishPlan | undefined> => {
      const c = calls[i]!;
      try {
        const p = await planFinish(this.ctx, c.req, read, c.tried, c.nonce);
        if (!('recovered' in p)) return p;
        outcomes[i] = await settled(
          recoverHandOffs(this.ctx, c.req.runId, p.recovered).then((handedOff) => ({ handedOff })),
        );
      } catch (error) {
        outcomes[i] = { error };
      }
      return undefined;
    };
    // Runs are planned side by side, one run's finishes in turn: each sees the dependents the ones
    // before it judged (their keys are the run's own, so `read` serves as every run's view).
    const byRun = new Map<string, number[]>();
    for (const [i, c] of calls.entries()) {
      const run = byRun.get(c.req.runId);
      if (run) run.push(i);
      else byRun.set(c.req.runId, [i]);
    }
    const plans: (FinishPlan | undefined)[] = calls.map(() => undefined);
    await Promise.all(
      [...byRun.values()].map(async (run) => {
        for (const [k, i] of run.entries()) {
          const p = await plan(i);
          plans[i] = p;
          // Only a later finish of the run reads them (most runs have one finish in a batch).
          if (k < run.length - 1)
            for (const w of p?.judged ?? []) read.set(mk(nodeKey(w.runId, w.d.spec.name)), encodeNode(w));
        }
      }),
    );
    const tx = this.ctx.db.tx();
    const delta = new Delta();
    const headers = new Map<string, FinishPlan['header']>();
    for (const p of plans) {
      if (!p) continue;
      tx.items.push(...p.tx.items);
      tx.bytes += p.tx.bytes;
      delta.merge(p.delta);
      const h = headers.get(p.header.runId);
      headers.set(p.header.runId, h ? { ...h, after: combined(h, p.header) } : p.header);
    }
    const now = this.ctx.clock.now();
    const sealing = new Set(plans.flatMap((p) => (p?.seal ? [p.header.runId] : [])));
    const sealed = new Map<string, RunConclusion>();
    for (const [runId, h] of headers) {
      const conclusion = addToHeader(tx, runId, h.before, h.after, true, sealOf(sealing.has(runId), h, now));
      if (conclusion) sealed.set(runId, conclusion);
    }
    delta.addTo(tx);
    const records = addHandOffs(
      this.ctx,
      tx,
      plans.flatMap((p) => (p?.handOff ? [p.handOff] : [])),
    );
    // A dependent judged by two of the finishes is written once; estimates fell short (dependents this
    // process had not seen, big node items): each call alone.
    if (!tx.collapse() || tx.size > DYNAMODB_MAX_TXN_ITEMS || tx.bytes > MAX_TXN_BYTES)
      throw new BatchNotCommitted();
    for (const c of calls) c.tried = true;
    let refused: Key[] = [];
    if (!(await this.ctx.db.commit(tx, (keys) => (refused = keys)))) {
      // Refused for dependents remembered here that another process has judged since (by what DynamoDB
      // names): the batch goes again together, each call reading everything and recognising its own commit
      // (a retry of the request may have been refused by it), so without hand-offs. Else each call alone.
      if (again || !forgetStale(this.ctx, refused, remembered)) throw new BatchNotCommitted();
      return this.send(calls, true);
    }
    for (const r of records) this.ctx.claimRecords.track(r.key, r.claimIds);
    await Promise.all(
      plans.map(async (p, i) => {
        if (!p) return;
        const after = await settled(p.after());
        outcomes[i] =
          'error' in after
            ? after
            : await settled(handedOff(this.ctx, p.handOff).then((h) => ({ handedOff: h })));
      }),
    );
    for (const [runId, conclusion] of sealed) emitSealed(this.ctx, runId, conclusion);
    await Promise.all(
      [...sealing]
        .filter((runId) => !sealed.has(runId))
        .map(async (runId) => {
          const sealed = await settled(sealRun(this.ctx, runId));
          for (const [i, p] of plans.entries())
            if ('error' in sealed && p?.header.runId === runId) outcomes[i] = sealed;
        }),
    );
    return outcomes;
  }
}

/** A call's own result in a batch: an error reaches its caller only. */
type Outcome = { result: FinishResult } | { error: unknown };

export async function settled<T>(p: Promise<T>): Promise<{ result: T } | { error: unknown }> {
  try {
    return { result: await p };
  } catch (error) {
    return { error };
  }
}

/** Two finishes' changes to one run's header as one: counts added, failed marks joined. */
function combined(a: { before: RunData; after: RunData }, b: { before: RunData; after: RunData }): RunData {
  const after = structuredClone(a.after);
  for (const k of Object.keys(after.counts) as (keyof RunData['counts'])[])
    after.counts[k] += b.after.counts[k] - b.before.counts[k];
  after.failed = a.after.failed || b.after.failed;
  const failed = new Set([...(a.after.failedNodes ?? []), ...(b.after.failedNodes ?? [])]);
  after.failedNodes = [...failed];
  return after;
}

/** The seal a finish's header change may carry (addToHeader): none when nothing may seal or the header was not read. */
function sealOf(
  seal: boolean,
  h: FinishPlan['header'],
  now: number,
): { read: RunItem; now: number } | undefined {
  return seal && !h.unread ? { read: h.read, now } : undefined;
}

/** Output bytes a batched finish may carry: larger outputs go alone, so a batch stays far below 4 MB. */
const BATCHED_OUTPUT_BYTES = 16 * 1024;

/**
 * Items a finish's transaction takes at most, by what this process knows of
 * the node's dependents (each its write and a settle item or, handed off, a
 * timer); a hand-off adds its lease's check and claim record.
 */
function finishItems(ctx: DynamoContext, req: FinishRequest): number {
  const down = ctx.downstream.get(req.runId, req.node);
  const handOff = req.handOff ? 2 : 0;
  return FINISH_ITEMS + handOff + 2 * Math.min(down?.length ?? INLINE_DEPENDENTS, INLINE_DEPENDENTS);
}
