import {
  checkRetryable,
  checkRetryNodes,
  checkRunId,
  planRetry,
  type Run,
  runStatus,
  topology,
} from '../../model/index.js';
import { NotFoundError, UnavailableError } from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode } from './context.js';
import { mk } from './db.js';
import {
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  moved,
  type NodeItem,
  next,
  nodeKey,
  type RunData,
  type RunItem,
  runPk,
  sealIfDone,
  writeHeader,
} from './items.js';
import { RETRY_CHUNK } from './limits.js';

/**
 * Rule 15. planRetry decides from the run as read; a plan of up to
 * RETRY_CHUNK nodes is one transaction conditioned on the header's and every
 * node's version. A bigger one marks the header `resuming` (claims wait, the
 * run cannot seal), puts nodes back RETRY_CHUNK at a time, clears the mark,
 * then touches the READY nodes once more so subscribers that saw them while
 * claims waited see them again.
 */
export async function retryRun(
  ctx: DynamoContext,
  runId: string,
  names: string[] | undefined,
  inspect: (id: string) => Promise<Run>,
): Promise<Run> {
  checkRunId(runId);
  checkRetryNodes(names);
  for (;;) {
    const headerItem = await ctx.db.get(headerKey(runId));
    if (!headerItem) throw new NotFoundError('run', runId);
    const header = decodeRun(headerItem);
    checkRetryable(runId, {
      status: header.d.resuming ? 'RUNNING' : runStatus(header.d.counts),
      conclusion: header.d.conclusion,
    });
    const nodes = (await ctx.db.partition(runPk(runId), 'n#')).map(decodeNode).sort((a, b) => a.d.i - b.d.i);
    const byName = new Map(nodes.map((n) => [n.d.spec.name, n]));
    const plan = planRetry(
      runId,
      nodes.map((n) => ({
        name: n.d.spec.name,
        trigger: n.d.spec.trigger,
        status: n.d.status,
        last: n.d.last,
        attempts: n.d.attempts,
      })),
      topology({
        nodes: nodes.map((n) => n.d.spec),
        edges: nodes.flatMap((n) => n.d.up.map((u) => ({ source: u, destination: n.d.spec.name }))),
      }),
      names,
    );
    const now = ctx.clock.now();
    const back = new Set(plan.nodes.map((p) => p.name));
    const d = {
      ...structuredClone(header.d),
      cancelled: false,
      failed: plan.failed,
      // Rule 19: the nodes put back are no longer failed.
      failedNodes: (header.d.failedNodes ?? []).filter((n) => !back.has(n)),
      conclusion: undefined,
      finishedAt: 0,
      // Rule 13: a retried run may conclude again and runs on without a deadline (its timer is dropped when due).
      timedOut: undefined,
      deadlineAt: undefined,
    };
    const writes: NodeItem[] = [];
    const delta = new Delta();
    for (const p of plan.nodes) {
      const n = byName.get(p.name)!;
      const nd = {
        ...n.d,
        tally: p.tally,
        retries: { fail: 0, error: 0 },
        abr: p.attemptsBeforeRetry,
        inputs: {},
        startedAt: 0,
        readyAt: undefined,
        status: p.status,
        finishedAt: p.status === 'COMPLETED' ? now : 0,
      };
      if (n.d.status !== p.status) {
        moved(d, n.d.status, p.status);
        delta.move(n.d.status, p.status);
      }
      writes.push(next(n, nd));
    }
    if (writes.length <= RETRY_CHUNK) {
      sealIfDone(d, now);
      const tx = ctx.db.tx();
      writeHeader(tx, header, d);
      for (const w of writes) tx.put(encodeNode(w), w.v - 1);
      delta.addTo(tx);
      if (!(await ctx.db.commit(tx))) continue;
      for (const w of writes) emitNode(ctx, w, runStatus(d.counts));
      for (const w of writes) if (w.d.status === 'READY') ctx.bus.emit('ready', w.d.spec.runtime);
      ctx.bus.emit('run', runId);
      return inspect(runId);
    }
    if (!(await applyInChunks(ctx, header, d, writes, now))) continue;
    return inspect(runId);
  }
}

async function applyInChunks(
  ctx: DynamoContext,
  header: RunItem,
  reset: RunData,
  writes: NodeItem[],
  now: number,
): Promise<boolean> {
  const runId = header.id;
  // The mark: claims wait and the run cannot seal until every node went back.
  let current: RunItem = {
    ...header,
    v: header.v + 1,
    d: { ...reset, counts: header.d.counts, resuming: true },
  };
  {
    const tx = ctx.db.tx();
    writeHeader(tx, header, current.d);
    if (!(await ctx.db.commit(tx))) return false;
  }
  // Nodes back, chunk by chunk; while the run is marked nothing else changes them.
  for (let at = 0; at < writes.length; at += RETRY_CHUNK) {
    const chunk = writes.slice(at, at + RETRY_CHUNK);
    const olds = await ctx.db.getMany(chunk.map((w) => nodeKey(runId, w.d.spec.name)));
    const d = structuredClone(current.d);
    const delta = new Delta();
    const tx = ctx.db.tx();
    for (const w of chunk) {
      const old = decodeNode(olds.get(mk(nodeKey(runId, w.d.spec.name)))!);
      if (old.v !== w.v - 1) continue; // put back by an earlier try
      moved(d, old.d.status, w.d.status);
      delta.move(old.d.status, w.d.status);
      tx.put(encodeNode(w), old.v);
    }
    const after: RunItem = { ...current, v: current.v + 1, d };
    writeHeader(tx, current, d);
    delta.addTo(tx);
    if (!(await ctx.db.commit(tx)))
      throw new UnavailableError(`retry of run ${runId} was interrupted; retry it again`);
    current = after;
  }
  const d = { ...current.d, resuming: undefined };
  sealIfDone(d, now);
  const tx = ctx.db.tx();
  writeHeader(tx, current, d);
  if (!(await ctx.db.commit(tx)))
    throw new UnavailableError(`retry of run ${runId} was interrupted; retry it again`);
  // READY again for subscribers: a new version each, so the ready index delivers them after the mark cleared.
  const ready = writes.filter((w) => w.d.status === 'READY').map((w) => w.d.spec.name);
  for (let at = 0; at < ready.length; at += RETRY_CHUNK) {
    const read = await ctx.db.getMany(ready.slice(at, at + RETRY_CHUNK).map((n) => nodeKey(runId, n)));
    const touch = ctx.db.tx();
    for (const item of read.values()) {
      const n = decodeNode(item);
      if (n.d.status === 'READY') touch.put(encodeNode(next(n, n.d)), n.v);
    }
    await ctx.db.commit(touch);
    for (const item of read.values()) ctx.bus.emit('ready', decodeNode(item).d.spec.runtime);
  }
  ctx.bus.emit('run', runId);
  return true;
}
