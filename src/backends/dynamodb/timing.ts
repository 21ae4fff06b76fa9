import { type Run, runStatus, timeoutFinish } from '../../model/index.js';
import { cancelRun } from './cancel.js';
import { type DynamoContext, emitNode, emitReady } from './context.js';
import { S } from './db.js';
import { finishNode } from './finish.js';
import { decodeNode, decodeRun, encodeNode, headerKey, type NodeData, next, nodeKey } from './items.js';
import { due, type Kind, TIMERS_PK } from './timers.js';

/** One pass over the timers due by ctx.clock. */
export async function sweepTimers(ctx: DynamoContext): Promise<number> {
  const items = await ctx.db.queryAll({
    KeyConditionExpression: 'pk = :pk AND sk <= :now',
    ExpressionAttributeValues: { ':pk': S(TIMERS_PK), ':now': S(`${due(ctx.clock.now())}#~`) },
    ConsistentRead: true,
  });
  for (const item of items) {
    const at = Number(item.at!.N);
    const t = JSON.parse(item.d!.S!) as { kind: Kind; runId: string; node: string; claim: string };
    try {
      if (t.kind === 'r') await releaseRetry(ctx, t.runId, t.node, at);
      else if (t.kind === 't') await endTimedOut(ctx, t.runId, t.node, t.claim);
      else await cancelLate(ctx, t.runId, at);
    } catch (e) {
      ctx.logger.debug('dynamodb timer failed', { error: (e as Error).message, timer: item.sk!.S });
      continue;
    }
    const tx = ctx.db.tx();
    tx.del({ pk: TIMERS_PK, sk: item.sk!.S! });
    await ctx.db.commit(tx);
  }
  return items.length;
}

/** The node READY and waiting for this very due time joins the ready index, conditioned on its version. */
async function releaseRetry(ctx: DynamoContext, runId: string, name: string, at: number): Promise<void> {
  for (;;) {
    const item = await ctx.db.get(nodeKey(runId, name));
    if (!item) return;
    const n = decodeNode(item);
    if (n.d.status !== 'READY' || n.d.readyAt !== at) return;
    const d: NodeData = { ...n.d, readyAt: undefined };
    const tx = ctx.db.tx();
    tx.putNode(encodeNode(next(n, d)), n.v);
    if (!(await ctx.db.commit(tx))) continue;
    const header = await ctx.db.get(headerKey(runId));
    emitNode(ctx, next(n, d), header ? runStatus(decodeRun(header).d.counts) : 'RUNNING');
    emitReady(ctx, next(n, d));
    ctx.bus.emit('run', runId);
    return;
  }
}

/** The attempt still running under this claim ends with the store's ERROR, through the finish path. */
async function endTimedOut(ctx: DynamoContext, runId: string, name: string, claimId: string): Promise<void> {
  const item = await ctx.db.get(nodeKey(runId, name));
  if (!item) return;
  const n = decodeNode(item);
  if (n.d.status !== 'RUNNING' || n.d.claim?.id !== claimId) return;
  try {
    await finishNode(ctx, { runId, node: name, claimId, ...timeoutFinish(n.d.spec) });
  } catch (e) {
    // Finished or cancelled meanwhile: nothing left to time out.
    if ((e as { code?: string }).code !== 'conflict') throw e;
  }
}

/** The run still open with this deadline is cancelled as by Cancel, marked to conclude TIMED_OUT. */
async function cancelLate(ctx: DynamoContext, runId: string, at: number): Promise<void> {
  const item = await ctx.db.get(headerKey(runId));
  if (!item) return;
  const h = decodeRun(item);
  if (h.d.conclusion || h.d.deadlineAt !== at) return;
  await cancelRun(ctx, runId, async () => ({}) as Run, at);
}
