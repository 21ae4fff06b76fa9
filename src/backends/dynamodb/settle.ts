import { tallied, triggerDecision, type UpstreamOutcome } from '../../model/index.js';
import type { Delta, DynamoContext } from './context.js';
import { type Item, mk, N, S, type Tx } from './db.js';
import {
  decodeNode,
  decodeRun,
  encodeNode,
  encodeRun,
  headerKey,
  moved,
  type NodeItem,
  next,
  nodeKey,
  type RunData,
  sealIfDone,
  WORK_PK,
} from './items.js';
import { SETTLE_CHUNK } from './limits.js';
import { Delta as NewDelta } from './context.js';

/**
 * Rules 5 and 14's cascade: the dependents of a node that completed count it
 * in and their triggers decide (READY, WAITING, or completed unreached). A
 * finish judges up to INLINE_DEPENDENTS dependents in its own transaction;
 * more (a fan-out), and the dependents of a node completed unreached (a
 * cascade), are a settle work item: a durable cursor over the node's
 * dependents that any process advances, SETTLE_CHUNK at a time, each chunk one
 * transaction conditioned on the cursor, the dependents' versions and the run
 * header's. The process that wrote the item drains it at once; the sweeper
 * resumes items whose process died.
 */
export interface SettleWork {
  run: string;
  node: string;
  outcome: UpstreamOutcome;
  cursor: number;
}

export const settleKey = (w: Pick<SettleWork, 'run' | 'node'>) => ({ pk: WORK_PK, sk: `settle#${w.run}#${w.node}` });

export function encodeSettle(w: SettleWork): Item {
  const k = settleKey(w);
  return { pk: S(k.pk), sk: S(k.sk), v: N(w.cursor), d: S(JSON.stringify({ kind: 'settle', ...w })) };
}

export interface Judged {
  writes: NodeItem[];
  spawned: SettleWork[];
  /** Runtimes with a node made READY (wake-ups after commit). */
  ready: string[];
}

/** Judges `deps` by one upstream `outcome`, updating the header counts and delta; WAITING nodes only (others were judged already). */
export function judge(deps: NodeItem[], outcome: UpstreamOutcome, run: RunData, delta: Delta, now: number): Judged {
  const out: Judged = { writes: [], spawned: [], ready: [] };
  for (const dep of deps) {
    if (dep.d.status !== 'WAITING') continue;
    const d = { ...dep.d, tally: tallied(dep.d.tally, outcome) };
    const decision = triggerDecision(d.spec.trigger, d.tally);
    if (decision === 'READY') {
      d.status = 'READY';
      out.ready.push(d.spec.runtime);
    } else if (decision === 'UNREACHED') {
      d.status = 'COMPLETED';
      d.finishedAt = now;
      if (d.down.length > 0) out.spawned.push({ run: dep.runId, node: d.spec.name, outcome: 'neither', cursor: 0 });
    }
    if (d.status !== dep.d.status) {
      moved(run, dep.d.status, d.status);
      delta.move(dep.d.status, d.status);
    }
    out.writes.push(next(dep, d));
  }
  return out;
}

/** Adds the judged writes to a transaction. */
export function addJudged(tx: Tx, j: Judged): void {
  for (const w of j.writes) tx.put(encodeNode(w), w.v - 1);
  for (const s of j.spawned) tx.put(encodeSettle(s), 'any');
}

/** Advances settle work items to their end, and those they spawn. */
export async function drainSettles(ctx: DynamoContext, works: SettleWork[]): Promise<void> {
  const queue = [...works];
  while (queue.length > 0) {
    const w = queue.shift()!;
    queue.push(...(await settleOne(ctx, w)));
  }
}

/** One settle item to its end (chunk by chunk); returns the items it spawned. */
async function settleOne(ctx: DynamoContext, w: SettleWork): Promise<SettleWork[]> {
  const spawned: SettleWork[] = [];
  let cursor = w.cursor;
  for (;;) {
    const fromItem = await ctx.db.getMany([nodeKey(w.run, w.node), headerKey(w.run), settleKey(w)]);
    const workItem = fromItem.get(mk(settleKey(w)));
    if (!workItem) return spawned; // done by another process
    cursor = Number(workItem.v!.N);
    const from = fromItem.get(mk(nodeKey(w.run, w.node)));
    const headerItem = fromItem.get(mk(headerKey(w.run)));
    if (!from || !headerItem || decodeRun(headerItem).d.cancelled) {
      // The run is gone, or cancelled (cancel completes every open node itself: no trigger is judged).
      await ctx.db.commit(deleteWork(ctx, w, cursor));
      return spawned;
    }
    const down = decodeNode(from).d.down;
    const names = down.slice(cursor, cursor + SETTLE_CHUNK);
    const header = decodeRun(headerItem);
    const deps = [...(await ctx.db.getMany(names.map((n) => nodeKey(w.run, n)))).values()].map(decodeNode);
    const now = ctx.clock.now();
    const d: RunData = structuredClone(header.d);
    const delta = new NewDelta();
    const j = judge(deps, w.outcome, d, delta, now);
    sealIfDone(d, now);
    const tx = ctx.db.tx();
    if (JSON.stringify(d) !== JSON.stringify(header.d)) tx.put(encodeRun({ ...header, v: header.v + 1, d }), header.v);
    else tx.checkV(headerKey(w.run), header.v);
    addJudged(tx, j);
    delta.addTo(tx);
    const end = cursor + names.length >= down.length;
    if (end) tx.del(settleKey(w), cursor);
    else tx.put(encodeSettle({ ...w, cursor: cursor + names.length }), cursor);
    if (!(await ctx.db.commit(tx))) continue;
    for (const rt of j.ready) ctx.bus.emit('ready', rt);
    ctx.bus.emit('run', w.run);
    spawned.push(...j.spawned);
    if (end) return spawned;
  }
}

function deleteWork(ctx: DynamoContext, w: SettleWork, cursor: number): Tx {
  const tx = ctx.db.tx();
  tx.del(settleKey(w), cursor);
  return tx;
}
