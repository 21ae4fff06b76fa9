import type { IRequestOp } from 'etcd3';
import type { FinishRequest } from '../../protocol/repository.js';
import type { EtcdContext, NodeTopology } from './context.js';
import { INLINE_DEPENDENTS } from './limits.js';
import { merge, statics, topologyOf } from './nodes.js';
import type { NodeRecord, RunRecord } from './records.js';
import { decodeJson } from './records.js';
import { get, getPrefix } from './store.js';

/**
 * What a transition decides on: a fresh read of the node, its run, its claim
 * key and (for a finish) its dependents, in one round trip; or, on a first
 * try, what this process last saw of them (SeenState), when that says "go ahead".
 */

export interface Read {
  node?: { rec: NodeRecord; rev: string };
  run?: { rec: RunRecord; rev: string };
  claimLive?: boolean;
  claimValue?: string;
  deps: Map<string, { rec: NodeRecord; rev: string }>;
}

/** Static facts read at once when a run is first met: all of a run this size or smaller. */
const TOPOLOGY_PREFETCH = 128;

/** One read transaction: the node, its run, and (when the topology is known) its claim key and dependents. */
export async function readNode(
  ctx: EtcdContext,
  runId: string,
  name: string,
  /** 'if-known': the dependents too when their facts are cached (a claim reads them for its finish to come). */
  deps: boolean | 'if-known',
): Promise<Read> {
  const known = (t: NodeTopology) => t.down.every((d) => ctx.topology.get(runId, d) !== undefined);
  let withDeps = deps === true;
  // A node with many dependents counts them down after its finish, in chunks (fanout.ts).
  const { keys, store } = ctx;
  let topo = ctx.topology.get(runId, name);
  if (deps === 'if-known' && topo) withDeps = known(topo);
  const ops: IRequestOp[] = [get(keys.node(runId, name)), get(keys.run(runId))];
  if (topo) {
    ops.push(get(keys.claim(topo.runtime, runId, name)));
    if (withDeps && topo.down.length <= INLINE_DEPENDENTS)
      for (const d of topo.down) ops.push(get(keys.node(runId, d)));
  } else {
    // This process has not met the run yet (another process started it): its facts are immutable, so
    // take a small run's whole topology now rather than node by node later.
    ops.push(getPrefix(keys.statics(runId), { limit: TOPOLOGY_PREFETCH }));
  }
  const first = await store.txn({ success: ops });
  let res = first.responses;
  const nodeKv = res[0]!.response_range.kvs[0];
  const runKv = res[1]!.response_range.kvs[0];
  const out: Read = { deps: new Map() };
  if (runKv) out.run = { rec: decodeJson<RunRecord>(runKv.value), rev: runKv.mod_revision };
  if (!topo)
    for (const kv of res[2]!.response_range.kvs)
      ctx.topology.set(runId, keys.nodeName(kv.key, runId), topologyOf(kv.value));
  if (!nodeKv) return out;
  if (!topo) {
    topo = (await statics(ctx, runId, [name])).get(name);
    if (!topo) return out; // a half-written chunked start: not there yet
    if (deps === 'if-known') withDeps = known(topo);
    const more: IRequestOp[] = [get(keys.claim(topo.runtime, runId, name))];
    if (withDeps && topo.down.length <= INLINE_DEPENDENTS)
      for (const d of topo.down) more.push(get(keys.node(runId, d)));
    // Read at the same revision so the node and its dependents agree.
    const again = await store.txn({
      success: more.map((op) => ({
        request_range: { ...op.request_range!, revision: first.header.revision },
      })),
    });
    res = [res[0]!, res[1]!, ...again.responses];
    // The node may have changed since: the transaction's compare on it catches that.
  }
  out.node = { rec: merge(topo, nodeKv.value), rev: nodeKv.mod_revision };
  withDeps &&= topo.down.length <= INLINE_DEPENDENTS;
  const depFacts = withDeps ? await statics(ctx, runId, topo.down) : new Map<string, NodeTopology>();
  const claimKv = res[2]!.response_range.kvs[0];
  out.claimLive = claimKv !== undefined;
  out.claimValue = claimKv?.value.toString();
  if (withDeps)
    topo.down.forEach((d, i) => {
      const kv = res[3 + i]?.response_range.kvs[0];
      const t = depFacts.get(d);
      if (kv && t) out.deps.set(d, { rec: merge(t, kv.value), rev: kv.mod_revision });
    });
  remember(ctx, runId, out);
  return out;
}

function remember(ctx: EtcdContext, runId: string, r: Read): void {
  if (r.run) ctx.seen.setRun(r.run.rec, r.run.rev);
  if (r.node) ctx.seen.setNode(runId, r.node.rec, r.node.rev);
  for (const d of r.deps.values()) ctx.seen.setNode(runId, d.rec, d.rev);
}

/** A claim's first try, from what this process last saw (SeenState): only when that says "claim it". */
export function seenForClaim(ctx: EtcdContext, runId: string, name: string): Read | undefined {
  const node = ctx.seen.node(runId, name);
  const run = ctx.seen.run(runId);
  // A delay seen here may have been released since by another process: read afresh.
  if (node?.rec.s !== 'READY' || node.rec.ra || !run || run.rec.cancelled) return undefined;
  return { node, run, deps: new Map() };
}

/** A finish's first try, likewise: the node RUNNING under this claim, and every dependent it counts down known. */
export function seenForFinish(ctx: EtcdContext, req: FinishRequest, withDeps: boolean): Read | undefined {
  const node = ctx.seen.node(req.runId, req.node);
  const run = ctx.seen.run(req.runId);
  const c = node?.rec.c;
  if (node?.rec.s !== 'RUNNING' || c?.id !== req.claimId || !run || run.rec.cancelled) return undefined;
  const deps = new Map<string, { rec: NodeRecord; rev: string }>();
  if (withDeps && node.rec.down.length <= INLINE_DEPENDENTS)
    for (const d of node.rec.down) {
      const dep = ctx.seen.node(req.runId, d);
      if (!dep) return undefined;
      deps.set(d, dep);
    }
  // The claim key's value and lease are compared by the transaction itself.
  return { node, run, claimLive: true, claimValue: c.id, deps };
}
