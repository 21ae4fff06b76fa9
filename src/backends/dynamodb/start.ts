import {
  checkGraph,
  type GraphSpec,
  initialStatus,
  normalizeNodeSpec,
  openTally,
  type Run,
  rfc3339,
  runStatus,
  topology,
} from '../../model/index.js';
import { TooLargeError } from '../../protocol/errors.js';
import { Delta, type DynamoContext } from './context.js';
import { itemBytes } from './db.js';
import { encodeNode, encodeRun, type NodeItem, type RunItem } from './items.js';
import { MAX_NODE_ITEM_BYTES } from './limits.js';

/**
 * Rule 1. The node items are written first, in batches (idempotent puts of
 * items nobody reads yet), then the run header in one transaction with the
 * stats counters: the run is visible (listed, inspectable, claimable) only
 * once its header exists, so a start cut short leaves no half a run, only
 * unreachable node items.
 */
export async function startRun(ctx: DynamoContext, spec: GraphSpec): Promise<Run> {
  checkGraph(spec);
  const now = ctx.clock.now();
  const id = ctx.ids.next(now);
  const topo = topology(spec);
  const ein = new Map<string, [number, string][]>(spec.nodes.map((n) => [n.name, []]));
  for (const [k, e] of spec.edges.entries()) ein.get(e.destination)!.push([k, e.source]);
  const header: RunItem = {
    id,
    v: 1,
    d: {
      createdAt: now,
      total: spec.nodes.length,
      edges: spec.edges.length,
      counts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 },
      cancelled: false,
      failed: false,
      finishedAt: 0,
    },
  };
  const delta = new Delta();
  delta.runs = 1;
  const nodes: NodeItem[] = spec.nodes.map((raw, i) => {
    const s = normalizeNodeSpec(raw);
    const up = topo.upstream.get(s.name)!;
    const status = initialStatus(up.length);
    header.d.counts[status]++;
    delta.nodes[status]++;
    return {
      runId: id,
      v: 1,
      d: {
        i,
        spec: s,
        up,
        down: topo.downstream.get(s.name)!,
        ein: ein.get(s.name)!,
        status,
        tally: openTally(up.length),
        retries: { fail: 0, error: 0 },
        attempts: 0,
        startedAt: 0,
        finishedAt: 0,
        inputs: {},
        abr: 0,
        seq: 0,
        live: 0,
      },
    };
  });
  const items = nodes.map(encodeNode);
  for (const [k, item] of items.entries())
    if (itemBytes(item) > MAX_NODE_ITEM_BYTES)
      throw new TooLargeError(
        `node ${JSON.stringify(nodes[k]!.d.spec.name)} needs ${itemBytes(item)} bytes (spec and neighbours); a DynamoDB item holds ${MAX_NODE_ITEM_BYTES}`,
      );
  await ctx.db.writeAll(items);
  const tx = ctx.db.tx();
  tx.put(encodeRun(header));
  delta.addTo(tx);
  await ctx.db.commit(tx);
  for (const n of nodes) if (n.d.status === 'READY') ctx.bus.emit('ready', n.d.spec.runtime);
  return {
    id,
    createdAt: rfc3339(now),
    nodes: nodes.map((n) => ({
      spec: n.d.spec,
      status: n.d.status,
      attempts: [],
      startedAt: '',
      finishedAt: '',
      inputs: {},
    })),
    edges: spec.edges.map((e) => ({ source: e.source, destination: e.destination })),
    status: runStatus(header.d.counts),
  };
}
