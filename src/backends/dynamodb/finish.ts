import {
  attemptStartMs,
  boundedAppend,
  checkConclusion,
  checkMetadata,
  checkNodeName,
  checkRunId,
  checkStartedAt,
  countAttempt,
  finishOutcome,
  runStatus,
  statusAfterFinish,
  truncateOutput,
  upstreamOutcome,
} from '../../model/index.js';
import { claimNotLive, type FinishRequest, NotFoundError, nodeNotFound } from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode } from './context.js';
import { mk } from './db.js';
import {
  addToHeader,
  decodeNode,
  decodeRun,
  encodeAttempt,
  encodeNode,
  encodeOutput,
  FINISH_SEQ,
  headerKey,
  leaseClaimKey,
  moved,
  type NodeData,
  type NodeItem,
  next,
  nodeKey,
} from './items.js';
import { INLINE_DEPENDENTS, OUTPUT_PART_BYTES } from './limits.js';
import { sealRun } from './seal.js';
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
export async function finishNode(ctx: DynamoContext, req: FinishRequest): Promise<void> {
  checkRunId(req.runId);
  checkNodeName(req.node);
  checkConclusion(req.conclusion);
  checkMetadata(req.metadata);
  checkStartedAt(req.startedAt);
  const output = req.output ?? new Uint8Array();
  /** A commit of this call whose outcome is unknown: the node's last attempt under this claim says it landed. */
  let tried = false;
  for (;;) {
    // Dependents known from this process's claim come in the same read as the node.
    const known = ctx.downstream.get(req.runId, req.node);
    const prefetch = known && known.length <= INLINE_DEPENDENTS ? known : [];
    const read = await ctx.db.getMany([
      nodeKey(req.runId, req.node),
      headerKey(req.runId),
      ...prefetch.map((n) => nodeKey(req.runId, n)),
    ]);
    const headerItem = read.get(mk(headerKey(req.runId)));
    if (!headerItem) throw new NotFoundError('run', req.runId);
    const nodeItem = read.get(mk(nodeKey(req.runId, req.node)));
    if (!nodeItem) throw nodeNotFound(req.runId, req.node);
    const header = decodeRun(headerItem);
    const node = decodeNode(nodeItem);
    const claim = node.d.claim;
    if (tried && node.d.lastClaim === req.claimId) return;
    if (node.d.status !== 'RUNNING' || claim?.id !== req.claimId || claim.orphaned || header.d.cancelled)
      throw claimNotLive(req, {
        status: node.d.status,
        orphaned: claim?.id === req.claimId && claim.orphaned,
        cancelled: header.d.cancelled,
      });
    const now = ctx.clock.now();
    const outcome = finishOutcome(node.d.spec, req.conclusion, node.d.retries);
    const attempt = node.d.attempts + 1;
    const d: NodeData = {
      ...node.d,
      attempts: attempt,
      last: req.conclusion,
      lastClaim: req.claimId,
      retries: countAttempt(node.d.retries, req.conclusion),
      claim: undefined,
      status: statusAfterFinish(outcome),
      seq: 0,
      live: 0,
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
    tx.put(encodeNode(next(node, d)), node.v);
    tx.put(
      encodeAttempt(req.runId, d.i, attempt, {
        conclusion: req.conclusion,
        metadata: req.metadata ?? {},
        claimId: claim.id,
        agentId: claim.agentId,
        startedAt: attemptStartMs(node.d.startedAt, now, req.startedAt),
        finishedAt: now,
      }),
      'any',
    );
    // What was streamed stays in its parts; the finish's output follows it within the cap (rule 10).
    const tail = node.d.live > 0 ? boundedAppend(node.d.live, output) : truncateOutput(output);
    for (const part of encodeOutput(req.runId, d.i, attempt, FINISH_SEQ, tail, OUTPUT_PART_BYTES))
      tx.put(part, 'any');
    tx.del(leaseClaimKey(claim.leaseId, req.runId, req.node));
    let spawned: SettleWork[] = [];
    let ready: string[] = [];
    let judged: NodeItem[] = [];
    if (outcome !== 'RETRY' && d.down.length > 0) {
      const o = upstreamOutcome(req.conclusion);
      if (d.down.length <= INLINE_DEPENDENTS) {
        const depItems =
          prefetch === d.down || prefetch.length === d.down.length
            ? read
            : await ctx.db.getMany(d.down.map((n) => nodeKey(req.runId, n)));
        const deps = d.down
          .map((n) => depItems.get(mk(nodeKey(req.runId, n))))
          .filter((x) => x !== undefined)
          .map(decodeNode);
        const j = judge(deps, o, hd, delta, now);
        addJudged(tx, j);
        judged = j.writes;
        spawned = j.spawned;
        ready = j.ready;
      } else {
        const w: SettleWork = { run: req.runId, node: req.node, outcome: o, cursor: 0 };
        tx.put(encodeSettle(w), 'any');
        spawned = [w];
      }
    }
    addToHeader(tx, req.runId, header.d, hd, true);
    delta.addTo(tx);
    tried = true;
    if (!(await ctx.db.commit(tx))) continue;
    const status = runStatus(hd.counts);
    emitNode(ctx, next(node, d), status);
    for (const w of judged) emitNode(ctx, w, status);
    if (d.status === 'READY' && !d.readyAt) ready.push(d.spec.runtime);
    for (const rt of ready) ctx.bus.emit('ready', rt);
    ctx.bus.emit('run', req.runId);
    if (spawned.length > 0) await drainSettles(ctx, spawned);
    if (d.status === 'COMPLETED') await sealRun(ctx, req.runId);
    return;
  }
}
