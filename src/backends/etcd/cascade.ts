import type { ICompare, IRequestOp } from 'etcd3';
import type { UpstreamOutcome } from '../../model/index.js';
import type { EtcdContext } from './context.js';
import { SETTLE_BATCH } from './limits.js';
import { readNodes } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { decodeJson, type NodeRecord, type RunRecord } from './records.js';
import { del, modIs } from './store.js';
import { settle } from './triggers.js';
import { type CascadeItem, cascadeItem, workItemKey } from './work-items.js';

/**
 * Rules 5 and 14 on etcd: the dependents of a node that completed without
 * success (failed for good, or unreached) judge it by their triggers, and
 * those that go unreached pass it on, in bounded transactions with compares,
 * safe to repeat and to run in several processes at once (each dependent
 * records which upstream nodes it counted, so none is counted twice). The
 * transaction that completed the node records a work item; this removes it
 * once the cascade is done.
 */

interface Edge {
  up: string;
  dep: string;
  outcome: UpstreamOutcome;
}

/** Lets the dependents of `origin` (`item.from`) judge it, and so on below those that go unreached, in bounded batches. */
export async function cascade(
  ctx: EtcdContext,
  runId: string,
  origin: string,
  item: CascadeItem,
): Promise<void> {
  const { keys, store } = ctx;
  const now = ctx.clock.now();
  const first: UpstreamOutcome = item.o === 'n' ? 'neither' : 'failed';
  const seen = new Set(item.from.map((d) => `${origin}\u0000${d}`));
  const frontier: Edge[] = item.from.map((dep) => ({ up: origin, dep, outcome: first }));
  while (frontier.length > 0) {
    const batch = frontier.splice(0, SETTLE_BATCH);
    const next = await optimistic(
      store,
      `cascade from ${runId}/${origin}`,
      async (): Promise<Decision<NodeRecord[]>> => {
        const [nodes, runKv] = await store.retrying('cascade', async () => [
          await readNodes(ctx, runId, [...new Set(batch.map((e) => e.dep))]),
          (await store.range({ key: keys.run(runId) })).kvs[0],
        ]);
        // A cancel completes every open node itself.
        if (!runKv || decodeJson<RunRecord>(runKv.value).cancelled) return { done: [] };
        const byName = new Map(nodes.filter((n) => n !== undefined).map((n) => [n!.name, n!]));
        const compare: ICompare[] = [modIs(keys.run(runId), runKv.mod_revision)];
        const ops: IRequestOp[] = [];
        const passOn: NodeRecord[] = [];
        const current = new Map<string, NodeRecord>();
        for (const e of batch) {
          const n = byName.get(e.dep);
          if (!n) continue;
          const rec = current.get(e.dep) ?? n.rec;
          const settled = settle(ctx, runId, rec, e.up, e.outcome, now, false);
          if (!settled) {
            // A repeat of this walk (its process died): pass on what this edge made unreached before.
            if (rec.s === 'COMPLETED' && rec.a === 0 && rec.dn?.[e.up] && !current.has(e.dep))
              passOn.push(rec);
            continue;
          }
          if (!current.has(e.dep)) compare.push(modIs(keys.node(runId, e.dep), n.rev));
          // Only the last write of a node counts: drop earlier ops on it in this batch.
          current.set(e.dep, settled.next);
          ops.push(...settled.ops);
          if (settled.next.s === 'COMPLETED') passOn.push(settled.next);
        }
        if (ops.length === 0) return { done: passOn };
        return { compare, success: dedupe(ops), result: passOn };
      },
    );
    for (const rec of next)
      for (const d of rec.down) {
        const key = `${rec.spec.name}\u0000${d}`;
        if (seen.has(key)) continue;
        seen.add(key);
        frontier.push({ up: rec.spec.name, dep: d, outcome: 'neither' });
      }
  }
  await store.retrying('cascade', () =>
    store.txn({ success: [del(workItemKey(keys, runId, cascadeItem(origin)))] }),
  );
}

/** Later puts of a key replace earlier ones (two edges into one dependent in a batch); etcd refuses a key twice in a txn. */
function dedupe(ops: IRequestOp[]): IRequestOp[] {
  const last = new Map<string, number>();
  ops.forEach((op, i) => {
    const key = (op.request_put?.key ?? op.request_delete_range?.key)?.toString('latin1');
    if (key !== undefined) last.set(key, i);
  });
  return ops.filter((op, i) => {
    const key = (op.request_put?.key ?? op.request_delete_range?.key)?.toString('latin1');
    return key === undefined || last.get(key) === i;
  });
}
