import { nextAttemptAt, nodeTimeoutMs, type Run, runStatus, timeoutFinish } from '../../model/index.js';
import { cancelRun } from './cancel.js';
import { type DynamoContext, emitNode } from './context.js';
import { type Item, type Key, N, S, type Tx } from './db.js';
import { finishNode } from './finish.js';
import { decodeNode, decodeRun, encodeNode, headerKey, type NodeData, next, nodeKey } from './items.js';

/**
 * The time rules without a server clock (like etcd): the process clock
 * (ctx.clock) decides. Each timed thing is an item of the `timers` partition
 * keyed by its due time, so a sweep Queries `sk <= now` (never a scan):
 * `r` a retry delay (rule 5), `t` a node timeout (rule 11), `d` a run
 * deadline (rule 13). An item is only a reminder: what it does is conditioned
 * on the node or run still being as the item says, so stale ones are dropped.
 */
export const TIMERS_PK = 'timers';
type Kind = 'r' | 't' | 'd';
const due = (ms: number) => String(ms).padStart(15, '0');
export const timerKey = (at: number, kind: Kind, runId: string, node = '', claim = ''): Key => ({
  pk: TIMERS_PK,
  sk: `${due(at)}#${kind}#${runId}#${node}#${claim}`,
});

function timerItem(at: number, kind: Kind, runId: string, node = '', claim = ''): Item {
  const k = timerKey(at, kind, runId, node, claim);
  return { pk: S(k.pk), sk: S(k.sk), at: N(at), d: S(JSON.stringify({ kind, runId, node, claim })) };
}

/** Rule 5: a finish's retry is due later: the node keeps `readyAt` (out of the ready index) and a timer. */
export function delayRetry(
  tx: Tx,
  d: NodeData,
  prior: NodeData['retries'],
  conclusion: 'FAIL' | 'ERROR',
  runId: string,
  now: number,
): void {
  const at = nextAttemptAt(d.spec, conclusion, prior, now);
  if (at <= 0) return;
  d.readyAt = at;
  tx.put(timerItem(at, 'r', runId, d.spec.name), 'any');
}

/** Rule 11: a claim of a node with a timeout gets its timer (from the attempt's start). */
export function armTimeout(tx: Tx, d: NodeData, runId: string, claimId: string): void {
  const ms = nodeTimeoutMs(d.spec);
  if (ms !== undefined) tx.put(timerItem(d.startedAt + ms, 't', runId, d.spec.name, claimId), 'any');
}

/** Rule 11: the attempt finished: its timer goes in the same transaction (a cancel leaves it to lapse stale). */
export function disarmTimeout(tx: Tx, d: NodeData, runId: string, claimId: string): void {
  const ms = nodeTimeoutMs(d.spec);
  if (ms !== undefined) tx.del(timerKey(d.startedAt + ms, 't', runId, d.spec.name, claimId));
}

/** Rule 13: a run with a deadline gets its timer at start. */
export function armDeadline(tx: Tx, runId: string, at: number | undefined): void {
  if (at) tx.put(timerItem(at, 'd', runId), 'any');
}

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
    tx.put(encodeNode(next(n, d)), n.v);
    if (!(await ctx.db.commit(tx))) continue;
    const header = await ctx.db.get(headerKey(runId));
    emitNode(ctx, next(n, d), header ? runStatus(decodeRun(header).d.counts) : 'RUNNING');
    ctx.bus.emit('ready', d.spec.runtime);
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
  await cancelRun(ctx, runId, async () => ({}) as Run, true);
}
