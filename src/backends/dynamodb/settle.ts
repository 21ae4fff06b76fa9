import { runStatus, tallied, triggerDecision, type UpstreamOutcome } from '../../model/index.js';
import { type Delta, type DynamoContext, emitNode, emitReady, Delta as NewDelta } from './context.js';
import { type Item, itemBytes, mk, N, S, type Tx } from './db.js';
import {
  addToHeader,
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  moved,
  type NodeData,
  type NodeItem,
  next,
  nodeKey,
  type RecordedInput,
  type RunData,
  WORK_PK,
} from './items.js';
import { MAX_TXN_BYTES, MAX_TXN_ITEMS, SETTLE_CHUNK } from './limits.js';
import { sealRun } from './seal.js';

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
  /** The node's successful attempt, recorded on each dependent as its input (absent: it did not succeed). */
  input?: RecordedInput;
}

export const settleKey = (w: Pick<SettleWork, 'run' | 'node'>) => ({
  pk: WORK_PK,
  sk: `settle#${w.run}#${w.node}`,
});

export function encodeSettle(w: SettleWork): Item {
  const k = settleKey(w);
  return { pk: S(k.pk), sk: S(k.sk), v: N(w.cursor), d: S(JSON.stringify({ kind: 'settle', ...w })) };
}

export interface Judged {
  writes: NodeItem[];
  spawned: SettleWork[];
}

/** The upstream node being counted in: its name, how it completed, its successful attempt (an input). */
export interface Upstream {
  name: string;
  outcome: UpstreamOutcome;
  input?: RecordedInput;
}

/** One dependent judged by one upstream outcome: its new state (a WAITING node only; others were judged already). */
function judgeOne(
  dep: NodeItem,
  up: Upstream,
  run: RunData,
  delta: Delta,
  now: number,
): NodeData | undefined {
  if (dep.d.status !== 'WAITING') return undefined;
  const d = { ...dep.d, tally: tallied(dep.d.tally, up.outcome) };
  if (d.ins) {
    d.ins = { ...d.ins };
    if (up.input) d.ins[up.name] = up.input;
    else delete d.ins[up.name];
  }
  const decision = triggerDecision(d.spec.trigger, d.tally);
  if (decision === 'READY') d.status = 'READY';
  else if (decision === 'UNREACHED') {
    d.status = 'COMPLETED';
    d.finishedAt = now;
  }
  if (d.status !== dep.d.status) {
    moved(run, dep.d.status, d.status);
    delta.move(dep.d.status, d.status);
  }
  return d;
}

/** Judges `deps` by one upstream `outcome` (a finish's inline dependents), updating the header counts and delta. */
export function judge(deps: NodeItem[], up: Upstream, run: RunData, delta: Delta, now: number): Judged {
  const out: Judged = { writes: [], spawned: [] };
  for (const dep of deps) {
    const d = judgeOne(dep, up, run, delta, now);
    if (!d) continue;
    if (d.status === 'COMPLETED' && d.down.length > 0)
      out.spawned.push({ run: dep.runId, node: d.spec.name, outcome: 'neither', cursor: 0 });
    out.writes.push(next(dep, d));
  }
  return out;
}

/** Adds the judged writes to a transaction. */
export function addJudged(tx: Tx, j: Judged): void {
  for (const w of j.writes) tx.putNode(encodeNode(w), w.v - 1);
  for (const s of j.spawned) tx.put(encodeSettle(s), 'any');
}

/** A settle item being advanced: `persisted` when its work item exists in the table (at `w.cursor`). */
interface Frontier {
  w: SettleWork;
  down?: string[];
  persisted: boolean;
}

/** Advances settle work items to their end, and those they spawn. */
export async function drainSettles(ctx: DynamoContext, works: SettleWork[]): Promise<void> {
  let queue: Frontier[] = works.map((w) => ({ w, persisted: true }));
  while (queue.length > 0) {
    const runId = queue[0]!.w.run;
    // A bounded frontier per transaction, so each round has room to make progress.
    const mine = queue.filter((f) => f.w.run === runId).slice(0, 16);
    queue = queue.filter((f) => !mine.includes(f));
    queue.push(...(await settleRound(ctx, runId, mine)));
  }
}

/**
 * One transaction of a run's cascade: the frontier's dependents are judged
 * and, breadth first, the dependents of those completed unreached, as far as
 * the transaction's budget goes (so a chain costs one read per node and one
 * commit per ~MAX_TXN_ITEMS nodes). What is left is persisted as work items
 * in the same transaction and returned.
 */
async function settleRound(ctx: DynamoContext, runId: string, frontier: Frontier[]): Promise<Frontier[]> {
  for (;;) {
    const persisted = frontier.filter((f) => f.persisted);
    const read = await ctx.waiting.read(ctx.db, [
      headerKey(runId),
      ...persisted.map((f) => settleKey(f.w)),
      ...frontier.filter((f) => !f.down).map((f) => nodeKey(runId, f.w.node)),
    ]);
    const headerItem = read.get(mk(headerKey(runId)));
    const live: Frontier[] = [];
    for (const f of frontier) {
      const item = read.get(mk(settleKey(f.w)));
      if (!item) continue; // done by another process
      const from = f.down ? undefined : read.get(mk(nodeKey(runId, f.w.node)));
      live.push({
        w: { ...f.w, cursor: Number(item.v!.N) },
        persisted: true,
        down: f.down ?? (from ? decodeNode(from).d.down : []),
      });
    }
    if (live.length === 0) return [];
    if (!headerItem || decodeRun(headerItem).d.cancelled) {
      // The run is gone, or cancelled (cancel completes every open node itself: no trigger is judged).
      const tx = ctx.db.tx();
      for (const f of live) tx.del(settleKey(f.w), f.w.cursor);
      await ctx.db.commit(tx);
      return [];
    }
    const header = decodeRun(headerItem);
    const now = ctx.clock.now();
    const d: RunData = structuredClone(header.d);
    const delta = new NewDelta();
    const tx = ctx.db.tx();
    /** Dependents changed in this transaction: their new state and the version read. */
    const pending = new Map<string, { d: NodeData; v: number }>();
    const leftover: Frontier[] = [];
    let workOps = 0;
    let bytes = 0;
    const todo = [...live];
    while (todo.length > 0) {
      const f = todo.shift()!;
      const room = Math.floor((MAX_TXN_ITEMS - 4 - pending.size - workOps - todo.length) / 2);
      const down = f.down!;
      const names = down.slice(f.w.cursor, f.w.cursor + Math.min(room, SETTLE_CHUNK));
      const fetched = await ctx.waiting.read(
        ctx.db,
        names.filter((n) => !pending.has(n)).map((n) => nodeKey(runId, n)),
      );
      let taken = 0;
      for (const name of names) {
        const p = pending.get(name);
        const item = fetched.get(mk(nodeKey(runId, name)));
        const dep: NodeItem | undefined = p ? { runId, v: p.v, d: p.d } : item ? decodeNode(item) : undefined;
        if (!dep) {
          taken++;
          continue;
        }
        const size = itemBytes(encodeNode(dep));
        if (bytes + size > MAX_TXN_BYTES) break;
        taken++;
        const nd = judgeOne(dep, { name: f.w.node, outcome: f.w.outcome, input: f.w.input }, d, delta, now);
        if (!nd) continue;
        if (!p) bytes += size;
        pending.set(name, { d: nd, v: dep.v });
        if (nd.status === 'COMPLETED' && nd.down.length > 0)
          todo.push({
            w: { run: runId, node: name, outcome: 'neither', cursor: 0 },
            down: nd.down,
            persisted: false,
          });
      }
      const cursor = f.w.cursor + taken;
      if (cursor >= down.length) {
        if (f.persisted) {
          tx.del(settleKey(f.w), f.w.cursor);
          workOps++;
        }
      } else {
        const w = { ...f.w, cursor };
        tx.put(encodeSettle(w), f.persisted ? f.w.cursor : 'any');
        workOps++;
        leftover.push({ w, down, persisted: true });
      }
    }
    for (const [, p] of pending) tx.putNode(encodeNode({ runId, v: p.v + 1, d: p.d }), p.v);
    addToHeader(tx, runId, header.d, d, true);
    delta.addTo(tx);
    if (!(await ctx.db.commit(tx))) continue;
    const status = runStatus(d.counts);
    for (const [, p] of pending) emitNode(ctx, { runId, v: p.v + 1, d: p.d }, status);
    for (const [, p] of pending) if (p.d.status === 'READY') emitReady(ctx, { runId, v: p.v + 1, d: p.d });
    ctx.bus.emit('run', runId);
    await sealRun(ctx, runId);
    return leftover;
  }
}
