import type { EtcdContext, NodeTopology } from './context.js';
import { READS_PER_TXN } from './limits.js';
import { decodeJson, encodeJson, type NodeRecord } from './records.js';
import { get } from './store.js';

/**
 * A node lives in two keys: its immutable facts (N/, cached in-process) and
 * its small mutable state (n/). Transitions write state only, so their cost
 * does not grow with a neighbour's degree.
 */

type State = Omit<NodeRecord, 'i' | 'spec' | 'up' | 'down'>;

export function encodeStatic(rec: NodeRecord): Buffer {
  return encodeJson({ i: rec.i, spec: rec.spec, up: rec.up, down: rec.down });
}

export function encodeState(rec: NodeRecord): Buffer {
  const { i: _i, spec: _s, up: _u, down: _d, ...state } = rec;
  return encodeJson(state);
}

export function merge(t: Pick<NodeTopology, 'i' | 'spec' | 'up' | 'down'>, state: Buffer): NodeRecord {
  return { i: t.i, spec: t.spec, up: t.up, down: t.down, ...decodeJson<State>(state) };
}

export function topologyOf(staticValue: Buffer): NodeTopology {
  const t = decodeJson<Omit<NodeTopology, 'runtime'>>(staticValue);
  return { ...t, runtime: t.spec.runtime };
}

/** Static facts of these nodes, from the cache or (misses) one read per 100 nodes. */
export async function statics(
  ctx: EtcdContext,
  runId: string,
  names: string[],
): Promise<Map<string, NodeTopology>> {
  const out = new Map<string, NodeTopology>();
  const missing: string[] = [];
  for (const n of names) {
    const t = ctx.topology.get(runId, n);
    if (t) out.set(n, t);
    else missing.push(n);
  }
  for (let i = 0; i < missing.length; i += READS_PER_TXN) {
    const batch = missing.slice(i, i + READS_PER_TXN);
    const res = await ctx.store.txn({ success: batch.map((n) => get(ctx.keys.static(runId, n))) });
    batch.forEach((n, j) => {
      const kv = res.responses[j]!.response_range.kvs[0];
      if (!kv) return;
      const t = topologyOf(kv.value);
      ctx.topology.set(runId, n, t);
      out.set(n, t);
    });
  }
  return out;
}

/** Current state (with its mod revision) of these nodes of a run, undefined for a node not found. */
export async function readNodes(ctx: EtcdContext, runId: string, names: string[]) {
  const facts = await statics(ctx, runId, names);
  const res = await ctx.store.txn({ success: names.map((n) => get(ctx.keys.node(runId, n))) });
  return names.map((name, i) => {
    const kv = res.responses[i]!.response_range.kvs[0];
    const t = facts.get(name);
    return kv && t ? { name, rec: merge(t, kv.value), rev: kv.mod_revision } : undefined;
  });
}
