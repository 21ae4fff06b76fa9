import {
  checkRetryable,
  checkRetryNodes,
  checkRunId,
  planRetry,
  type RetriedNode,
  type Run,
  runStatus,
  topology,
} from '../../model/index.js';
import { NotFoundError } from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode, emitReady } from './context.js';
import { type Item, mk, N, S } from './db.js';
import {
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  keyItem,
  moved,
  type NodeData,
  type NodeItem,
  next,
  nodeKey,
  type RunData,
  type RunItem,
  runPk,
  sealIfDone,
  WORK_PK,
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
  stopAfter?: number,
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
    const nodes = await ctx.waiting.runNodes(ctx.db, runId);
    const byName = new Map(nodes.map((n) => [n.d.spec.name, n]));
    const plan = planRetry(
      runId,
      nodes.map((n) => ({
        name: n.d.spec.name,
        trigger: n.d.spec.trigger,
        status: n.d.status,
        last: n.d.last,
        attempts: n.d.attempts,
        attemptsBeforeRetry: n.d.abr,
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
      const nd = putBack(n.d, p, now);
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
      for (const w of writes) tx.putNode(encodeNode(w), w.v - 1);
      delta.addTo(tx);
      if (!(await ctx.db.commit(tx))) continue;
      for (const w of writes) emitNode(ctx, w, runStatus(d.counts));
      for (const w of writes) if (w.d.status === 'READY') emitReady(ctx, w);
      ctx.bus.emit('run', runId);
      return inspect(runId);
    }
    const steps = plan.nodes.map((p) => ({ ...p, v: byName.get(p.name)!.v }));
    if (!(await markRetry(ctx, header, d, steps, now))) continue;
    await finishRetry(ctx, runId, stopAfter);
    return inspect(runId);
  }
}

/** A node put back by a retry: its plan step applied to it as it was. */
function putBack(n: NodeData, p: RetriedNode, now: number): NodeData {
  return {
    ...n,
    tally: p.tally,
    retries: { fail: 0, error: 0 },
    abr: p.attemptsBeforeRetry,
    inputs: {},
    // Its upstream nodes may have run again or been put back too: the claim reads them.
    ins: undefined,
    startedAt: 0,
    readyAt: undefined,
    status: p.status,
    finishedAt: p.status === 'COMPLETED' ? now : 0,
  };
}

/** A step of a marked retry: the node's plan and the version it was planned on (so a step is applied once). */
type Step = RetriedNode & { v: number };

/** The durable record of a marked retry (work item `retry#<run>`): its plan lives in the run's `r#<plan>#<k>` parts. */
interface RetryWork {
  kind: 'retry';
  run: string;
  plan: string;
  parts: number;
  now: number;
}

const retryWorkKey = (runId: string) => ({ pk: WORK_PK, sk: `retry#${runId}` });
const planPartKey = (runId: string, plan: string, k: number) => ({
  pk: runPk(runId),
  sk: `r#${plan}#${String(k).padStart(6, '0')}`,
});

/**
 * Step 1 of a retry too big for one transaction: its plan is written in
 * parts of RETRY_CHUNK nodes (inert items of the run's partition), then one
 * transaction marks the header `resuming` with the reset run (claims wait,
 * it cannot seal) and writes the work item that lets any process's sweeper
 * finish the retry should this one die.
 */
async function markRetry(
  ctx: DynamoContext,
  header: RunItem,
  reset: RunData,
  steps: Step[],
  now: number,
): Promise<boolean> {
  const runId = header.id;
  const plan = ctx.ids.next(now);
  const parts: Item[] = [];
  for (let at = 0, k = 0; at < steps.length; at += RETRY_CHUNK, k++)
    parts.push({
      ...keyItem(planPartKey(runId, plan, k)),
      d: S(JSON.stringify(steps.slice(at, at + RETRY_CHUNK))),
    });
  await ctx.db.writeAll(parts);
  const work: RetryWork = { kind: 'retry', run: runId, plan, parts: parts.length, now };
  const tx = ctx.db.tx();
  writeHeader(tx, header, { ...reset, counts: header.d.counts, resuming: true });
  tx.put({ ...keyItem(retryWorkKey(runId)), v: N(0), d: S(JSON.stringify(work)) });
  if (await ctx.db.commit(tx)) return true;
  await ctx.db.writeAll(
    [],
    parts.map((p) => ({ pk: p.pk!.S!, sk: p.sk!.S! })),
  );
  return false;
}

/**
 * Steps 2 to 4 of a marked retry, by the process that marked it or by any
 * sweeper once that one died: each part's nodes go back in one transaction
 * (a node whose version moved on since the plan was put back already), the
 * mark is cleared (the run may seal), then the READY nodes are touched once
 * more so subscribers that saw them while claims waited see them again.
 * Every step is conditioned, so two processes finishing one retry do each
 * step once. `stopAfter` parts: a process dying midway (tests).
 */
export async function finishRetry(ctx: DynamoContext, runId: string, stopAfter = Number.POSITIVE_INFINITY) {
  const workItem = await ctx.db.get(retryWorkKey(runId));
  if (!workItem) return;
  const work = JSON.parse(workItem.d!.S!) as RetryWork;
  const ready: string[] = [];
  for (let k = 0; k < work.parts; k++) {
    if (k >= stopAfter) return;
    const part = await ctx.db.get(planPartKey(runId, work.plan, k));
    if (!part) return; // finished by another process
    const steps = JSON.parse(part.d!.S!) as Step[];
    ready.push(...steps.filter((p) => p.status === 'READY').map((p) => p.name));
    for (;;) {
      const read = await ctx.waiting.read(ctx.db, [
        headerKey(runId),
        ...steps.map((p) => nodeKey(runId, p.name)),
      ]);
      const headerItem = read.get(mk(headerKey(runId)));
      if (!headerItem) return;
      const current = decodeRun(headerItem);
      if (!current.d.resuming) return;
      const d = structuredClone(current.d);
      const delta = new Delta();
      const tx = ctx.db.tx();
      for (const p of steps) {
        const item = read.get(mk(nodeKey(runId, p.name)));
        if (!item) continue;
        const old = decodeNode(item);
        if (old.v !== p.v) continue; // put back by an earlier try
        moved(d, old.d.status, p.status);
        delta.move(old.d.status, p.status);
        tx.putNode(encodeNode(next(old, putBack(old.d, p, work.now))), old.v);
      }
      if (tx.size === 0) break;
      writeHeader(tx, current, d);
      delta.addTo(tx);
      if (await ctx.db.commit(tx)) break;
    }
  }
  for (;;) {
    const headerItem = await ctx.db.get(headerKey(runId));
    if (!headerItem) return;
    const current = decodeRun(headerItem);
    if (!current.d.resuming) return;
    const d = { ...structuredClone(current.d), resuming: undefined };
    sealIfDone(d, ctx.clock.now());
    const tx = ctx.db.tx();
    writeHeader(tx, current, d);
    tx.del(retryWorkKey(runId));
    if (await ctx.db.commit(tx)) break;
  }
  const parts = Array.from({ length: work.parts }, (_, k) => planPartKey(runId, work.plan, k));
  await ctx.db.writeAll([], parts);
  // READY again for subscribers: a new version each, so the ready index delivers them after the mark cleared.
  for (let at = 0; at < ready.length; at += RETRY_CHUNK) {
    const read = await ctx.waiting.read(
      ctx.db,
      ready.slice(at, at + RETRY_CHUNK).map((n) => nodeKey(runId, n)),
    );
    const touch = ctx.db.tx();
    for (const item of read.values()) {
      const n = decodeNode(item);
      if (n.d.status === 'READY') touch.putNode(encodeNode(next(n, n.d)), n.v);
    }
    if (!(await ctx.db.commit(touch))) continue;
    for (const item of read.values()) {
      const n = decodeNode(item);
      if (n.d.status === 'READY') emitReady(ctx, next(n, n.d));
    }
  }
  ctx.bus.emit('run', runId);
}
