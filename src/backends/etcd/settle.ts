import type { ICompare, IRequestOp } from 'etcd3';
import { cancelledAttempt, conclusionOf, unreached } from '../../model/index.js';
import { NotFoundError } from '../../protocol/errors.js';
import type { EtcdContext } from './context.js';
import { fanOut, fanOutItem } from './fanout.js';
import type { OpenStatus } from './keys.js';
import { SETTLE_BATCH } from './limits.js';
import { encodeState, readNodes } from './nodes.js';
import { decodeJson, encodeAttempt, encodeJson, type NodeRecord, type RunRecord } from './records.js';
import { countPrefix, del, delPrefix, get, getPrefix, modIs, put } from './store.js';

/**
 * Work that spans more nodes than one transaction may hold: completing the
 * nodes downstream of a final failure (unreached), cancelling a run,
 * counting down a wide node's dependents (fanout.ts), and
 * sealing a run's conclusion once nothing is open. Each step is a bounded
 * transaction with compares, safe to repeat and to run in several processes
 * at once; a k/<run>/<item> key records unfinished work so the sweeper of
 * any process completes it if the one doing it dies.
 */

const SWEEP_AGE_MS = 5_000;
const STAGING_AGE_MS = 10 * 60_000;

/** Completes (no attempt) every node downstream of a failed one, breadth first, in bounded batches. */
export async function cascade(ctx: EtcdContext, runId: string, item: string, from: string[]): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const seen = new Set(from);
  const frontier = [...from];
  while (frontier.length > 0) {
    const batch = frontier.splice(0, SETTLE_BATCH);
    for (;;) {
      const nodes = await store.retrying('cascade', () => readNodes(ctx, runId, batch));
      const compare: ICompare[] = [];
      const ops: IRequestOp[] = [];
      const done: NodeRecord[] = [];
      for (const n of nodes) {
        // A completed node's own downstream was completed when it was; a running one cannot be downstream of a failure.
        if (!n || !unreached(n.rec.s)) continue;
        compare.push(modIs(keys.node(runId, n.name), n.rev));
        ops.push(
          ...closeOps(ctx, runId, n.rec),
          put(keys.node(runId, n.name), encodeState(completed(n.rec, now))),
        );
        done.push(n.rec);
      }
      if (ops.length === 0) break;
      const res = await store.retrying('cascade', () => store.txn({ compare, success: ops }));
      if (!res.succeeded) continue;
      for (const rec of done)
        for (const d of rec.down)
          if (!seen.has(d)) {
            seen.add(d);
            frontier.push(d);
          }
      break;
    }
  }
  await store.retrying('cascade', () => store.txn({ success: [del(keys.workItem(runId, item))] }));
}

/** Index keys an open node holds in its current status, to delete as it completes. */
function closeOps(ctx: EtcdContext, runId: string, rec: NodeRecord): IRequestOp[] {
  const { keys } = ctx;
  const name = rec.spec.name;
  const rt = rec.spec.runtime;
  if (rec.s === 'WAITING') return [del(keys.openNode('W', runId, name))];
  if (rec.s === 'READY') return [del(keys.openNode('R', runId, name)), del(keys.ready(rt, runId, name))];
  if (rec.s === 'RUNNING')
    return [
      del(keys.openNode('U', runId, name)),
      del(keys.running(rt, runId, name)),
      del(keys.claim(rt, runId, name)),
    ];
  return [];
}

function completed(rec: NodeRecord, now: number): NodeRecord {
  return { ...rec, s: 'COMPLETED', ft: now, c: undefined };
}

/** Rule 6. Marks the run cancelled (from then on claims and finishes in it are refused), then completes its open nodes. */
export async function cancelRun(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  for (;;) {
    const res = await store.retrying('cancel', () => store.range({ key: keys.run(runId) }));
    const kv = res.kvs[0];
    if (!kv) throw new NotFoundError('run', runId);
    const run = decodeJson<RunRecord>(kv.value);
    if (run.conclusion) return;
    if (run.cancelled) break;
    const w = await store.retrying('cancel', () =>
      store.txn({
        compare: [modIs(keys.run(runId), kv.mod_revision)],
        success: [
          put(keys.run(runId), encodeJson({ ...run, cancelled: true })),
          put(keys.workItem(runId, 'cancel'), encodeJson({ at: ctx.clock.now() })),
        ],
      }),
    );
    if (w.succeeded) break;
  }
  await cancelNodes(ctx, runId);
  await maybeSeal(ctx, runId);
  await store.retrying('cancel', () => store.txn({ success: [del(keys.workItem(runId, 'cancel'))] }));
}

async function cancelNodes(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  for (const status of ['U', 'R', 'W'] as OpenStatus[]) {
    const prefix = keys.open(status, runId);
    const listed = await store.retrying('cancel', () =>
      store.txn({ success: [getPrefix(prefix, { keys_only: true })] }),
    );
    const names = listed.responses[0]!.response_range.kvs.map((kv) =>
      decodeURIComponent(kv.key.subarray(prefix.length).toString()),
    );
    for (let i = 0; i < names.length; i += SETTLE_BATCH) {
      const batch = names.slice(i, i + SETTLE_BATCH);
      for (;;) {
        const nodes = await store.retrying('cancel', () => readNodes(ctx, runId, batch));
        const compare: ICompare[] = [];
        const ops: IRequestOp[] = [];
        for (const n of nodes) {
          if (!n || n.rec.s === 'COMPLETED') continue;
          compare.push(modIs(keys.node(runId, n.name), n.rev));
          ops.push(...closeOps(ctx, runId, n.rec));
          const next = completed(n.rec, now);
          if (n.rec.s === 'RUNNING' && n.rec.c) {
            next.a = n.rec.a + 1;
            ops.push(
              put(
                keys.attempt(runId, n.name, next.a),
                encodeAttempt(
                  cancelledAttempt({ claimId: n.rec.c.id, agentId: n.rec.c.agent }, n.rec.st ?? 0, now),
                ),
              ),
            );
          }
          ops.push(put(keys.node(runId, n.name), encodeState(next)));
        }
        if (ops.length === 0) break;
        const res = await store.retrying('cancel', () => store.txn({ compare, success: ops }));
        if (res.succeeded) break;
      }
    }
  }
}

/** Completes whatever work items a finish of this node left, then seals the run if it is done. */
export async function resumeNodeWork(ctx: EtcdContext, runId: string, node: string): Promise<void> {
  const { keys, store } = ctx;
  const res = await store.retrying('finish', () =>
    store.txn({
      success: [get(keys.workItem(runId, `f:${node}`)), get(keys.workItem(runId, fanOutItem(node)))],
    }),
  );
  const failed = res.responses[0]!.response_range.kvs[0];
  if (failed) await cascade(ctx, runId, `f:${node}`, decodeJson<{ from: string[] }>(failed.value).from);
  if (res.responses[1]!.response_range.kvs[0]) await fanOut(ctx, runId, node);
  await maybeSeal(ctx, runId);
}

/** Writes the run's conclusion once no node is open. Readers derive it when absent; this makes lists cheap. */
export async function maybeSeal(ctx: EtcdContext, runId: string): Promise<void> {
  const { keys, store } = ctx;
  for (;;) {
    const res = await store.retrying('seal', () =>
      store.txn({
        success: [
          get(keys.run(runId)),
          get(keys.failed(runId)),
          countPrefix(keys.open('W', runId)),
          countPrefix(keys.open('R', runId)),
          countPrefix(keys.open('U', runId)),
        ],
      }),
    );
    const r = res.responses.map((x) => x.response_range);
    const kv = r[0]!.kvs[0];
    if (!kv) return;
    const run = decodeJson<RunRecord>(kv.value);
    if (run.conclusion) return;
    if (Number(r[2]!.count) + Number(r[3]!.count) + Number(r[4]!.count) > 0) return;
    const conclusion = conclusionOf({ cancelled: run.cancelled === true, failed: r[1]!.kvs.length > 0 });
    const w = await store.retrying('seal', () =>
      store.txn({
        compare: [modIs(keys.run(runId), kv.mod_revision)],
        success: [put(keys.run(runId), encodeJson({ ...run, conclusion }))],
      }),
    );
    if (w.succeeded) return;
  }
}

/**
 * Finishes work a dead process left behind: cascades and cancels recorded
 * under k/ for longer than a few seconds, and chunked starts that never
 * committed. Cheap when there is nothing to do (two small ranges).
 */
export async function sweep(ctx: EtcdContext): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const res = await store.txn({ success: [getPrefix(keys.work()), getPrefix(keys.staging())] });
  for (const kv of res.responses[0]!.response_range.kvs) {
    const item = decodeJson<{ at: number; from?: string[] }>(kv.value);
    if (now - item.at < SWEEP_AGE_MS) continue;
    const runId = keys.workRun(kv.key);
    const name = decodeURIComponent(kv.key.toString().slice(keys.work(runId).length));
    if (name === 'cancel') await cancelRun(ctx, runId).catch(() => undefined);
    else if (name.startsWith('d:')) await fanOut(ctx, runId, name.slice(2));
    else await cascade(ctx, runId, name, item.from ?? []);
    await maybeSeal(ctx, runId);
  }
  for (const kv of res.responses[1]!.response_range.kvs) {
    const s = decodeJson<{ createdAt: number; runtimes: string[] }>(kv.value);
    if (now - s.createdAt < STAGING_AGE_MS) continue;
    const runId = kv.key.toString().slice(keys.staging().length);
    const exists = await store.range({ key: keys.run(runId), count_only: true });
    const ops = [del(keys.staging(runId))];
    if (Number(exists.count) === 0)
      ops.push(
        delPrefix(keys.nodes(runId)),
        delPrefix(keys.statics(runId)),
        delPrefix(keys.open('W', runId)),
        delPrefix(keys.open('R', runId)),
        ...s.runtimes.map((rt) => delPrefix(keys.queue(rt, runId))),
      );
    await store.txn({ success: ops });
    ctx.logger.info('removed an abandoned chunked start', { run: runId });
  }
}
