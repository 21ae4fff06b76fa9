import { cancelledAttemptFields, checkRunId, type Run, runStatus } from '../../model/index.js';
import { NotFoundError } from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode } from './context.js';
import { type Item, N, S } from './db.js';
import {
  addToHeader,
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  moved,
  type NodeItem,
  next,
  nodeKey,
  recordAttempt,
  WORK_PK,
  writeHeader,
} from './items.js';
import { CANCEL_CHUNK } from './limits.js';
import { finishRetry } from './resume.js';
import { sealRun } from './seal.js';

/**
 * Rule 6. First one transaction marks the run cancelled (claims and finishes
 * compare the header, so none slips in after) and records a cancel work item;
 * then the open nodes complete in chunks of CANCEL_CHUNK, each one
 * transaction (a RUNNING node gets its CANCELLED attempt: what it streamed
 * stays its output, in place), the run completing with the last. The sweeper
 * finishes a cancel whose process died.
 */
export const cancelKey = (runId: string) => ({ pk: WORK_PK, sk: `cancel#${runId}` });

export async function cancelRun(
  ctx: DynamoContext,
  runId: string,
  inspect: (id: string) => Promise<Run>,
  /** Rule 13: cancelled by this deadline (ms), concluding TIMED_OUT; nothing when the run no longer has it. */
  deadline?: number,
): Promise<Run> {
  checkRunId(runId);
  const timedOut = deadline !== undefined;
  let retryFinished = false;
  for (;;) {
    const item = await ctx.db.get(headerKey(runId));
    if (!item) throw new NotFoundError('run', runId);
    const header = decodeRun(item);
    if (header.d.resuming && !retryFinished) {
      // A retry is putting nodes back: finished first (as its process or a sweeper would), so the cancel
      // completes every node it put back and the run concludes, rather than only those back so far.
      await finishRetry(ctx, runId);
      retryFinished = true;
      continue;
    }
    if (header.d.conclusion && !header.d.resuming) return inspect(runId);
    // Judged on the header this write is conditioned on: a run retried since runs on without its deadline.
    if (timedOut && !header.d.cancelled && header.d.deadlineAt !== deadline) return inspect(runId);
    if (!header.d.cancelled) {
      const tx = ctx.db.tx();
      writeHeader(tx, header, { ...header.d, cancelled: true, ...(timedOut ? { timedOut: true } : {}) });
      const work: Item = {
        pk: S(cancelKey(runId).pk),
        sk: S(cancelKey(runId).sk),
        v: N(0),
        d: S(JSON.stringify({ kind: 'cancel', run: runId })),
      };
      tx.put(work, 'any');
      if (!(await ctx.db.commit(tx))) continue;
    }
    await completeCancel(ctx, runId);
    return inspect(runId);
  }
}

/** Completes every open node of a cancelled run, chunk by chunk; safe to run twice at once. */
export async function completeCancel(ctx: DynamoContext, runId: string): Promise<void> {
  // One read of the run's nodes; a chunk that loses a race reads its own nodes again.
  let open = (await ctx.waiting.runNodes(ctx.db, runId)).filter((n) => n.d.status !== 'COMPLETED');
  while (open.length > 0) {
    const headerItem = await ctx.db.get(headerKey(runId));
    if (!headerItem) break;
    const header = decodeRun(headerItem);
    // Retried since (this is a late sweep of a finished cancel): nothing left to cancel, and what the retried
    // run has pending (its settles) is its own.
    if (!header.d.cancelled) return dropStaleCancelItem(ctx, runId);
    const now = ctx.clock.now();
    const d = structuredClone(header.d);
    const delta = new Delta();
    const tx = ctx.db.tx();
    const written: NodeItem[] = [];
    for (const n of open.slice(0, CANCEL_CHUNK)) {
      const nd = {
        ...n.d,
        status: 'COMPLETED' as const,
        finishedAt: now,
        seq: 0,
        live: 0,
        readyAt: undefined,
      };
      const c = n.d.claim;
      if (n.d.status === 'RUNNING' && c) {
        // Rule 6's attempt as the model decides it; the times are this store's (ms).
        const attempt = cancelledAttemptFields({ claimId: c.id, agentId: c.agentId });
        nd.attempts = n.d.attempts + 1;
        nd.last = attempt.conclusion;
        nd.claim = undefined;
        recordAttempt(tx, runId, n.d, nd, { ...attempt, startedAt: n.d.startedAt, finishedAt: now });
        // Its timeout timer (rule 11) stays: CANCEL_CHUNK's item budget has no room; when due it finds the node completed and goes.
      }
      moved(d, n.d.status, 'COMPLETED');
      delta.move(n.d.status, 'COMPLETED');
      written.push(next(n, nd));
      tx.putNode(encodeNode(next(n, nd)), n.v);
    }
    addToHeader(tx, runId, header.d, d, false);
    delta.addTo(tx);
    const chunk = open.slice(0, CANCEL_CHUNK);
    if (await ctx.db.commit(tx)) {
      for (const w of written) emitNode(ctx, w, runStatus(d.counts));
      ctx.bus.emit('run', runId);
      open = open.slice(CANCEL_CHUNK);
    } else {
      const fresh = await ctx.waiting.read(
        ctx.db,
        chunk.map((n) => nodeKey(runId, n.d.spec.name)),
      );
      open = [
        ...[...fresh.values()].map(decodeNode).filter((n) => n.d.status !== 'COMPLETED'),
        ...open.slice(CANCEL_CHUNK),
      ];
    }
  }
  await sealRun(ctx, runId);
  // Cascades still pending judge nothing in a cancelled run (rule 6): they go too, so none outlives a retry.
  const settles = await ctx.db.partition(WORK_PK, `settle#${runId}#`, { ProjectionExpression: 'pk, sk' });
  await ctx.db.writeAll(
    [],
    settles.map((i) => ({ pk: i.pk!.S!, sk: i.sk!.S! })),
  );
  const tx = ctx.db.tx();
  tx.del(cancelKey(runId));
  await ctx.db.commit(tx);
}

/** The item of a cancel whose run was retried since; kept if a new cancel has marked the run meanwhile. */
async function dropStaleCancelItem(ctx: DynamoContext, runId: string): Promise<void> {
  const tx = ctx.db.tx();
  tx.check(headerKey(runId), 'attribute_not_exists(cx)');
  tx.del(cancelKey(runId));
  await ctx.db.commit(tx);
}
