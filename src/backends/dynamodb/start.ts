import {
  checkStartOptions,
  deadlineAt,
  type GraphSpec,
  initialStatus,
  normalizeNodeSpec,
  openTally,
  planStart,
  type Run,
  rfc3339,
  runStatus,
  topology,
} from '../../model/index.js';
import { TooLargeError } from '../../protocol/errors.js';
import type { StartOptions } from '../../protocol/repository.js';
import { Delta, type DynamoContext, emitReady } from './context.js';
import { itemBytes, S } from './db.js';
import {
  decodeNode,
  encodeNode,
  encodeRun,
  keyItem,
  type NodeItem,
  nodeKey,
  type RunItem,
  requestKey,
} from './items.js';
import { INLINE_ROOTS, MAX_NODE_ITEM_BYTES, MAX_TXN_BYTES } from './limits.js';
import { inspectRun } from './reads.js';
import { armDeadline } from './timers.js';
import { getWorkflow } from './workflows.js';

/**
 * Rule 1. The node items are written first, in batches (idempotent puts of
 * items nobody reads yet), then the run header in one transaction with the
 * stats counters: the run is visible (listed, inspectable, claimable) only
 * once its header exists, so a start cut short leaves no half a run, only
 * unreachable node items.
 */
export async function startRun(
  ctx: DynamoContext,
  given: GraphSpec | undefined,
  options: StartOptions = {},
): Promise<Run> {
  checkStartOptions(given, options);
  if (options.requestId !== undefined) {
    const earlier = await requestedRun(ctx, options.requestId);
    if (earlier) return earlier;
  }
  const definition = options.workflow ? await getWorkflow(ctx, options.workflow, options.version) : undefined;
  const { spec, identity } = planStart(given, options, definition);
  const now = ctx.clock.now();
  const id = ctx.ids.next(now);
  const topo = topology(spec);
  const deadline = deadlineAt(spec, now);
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
      ...(deadline ? { deadlineAt: deadline } : {}),
      ...(Object.keys(identity).length > 0 ? { identity } : {}),
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
  // READY nodes join the ready index only once the header exists: no subscriber sees a run not yet started.
  const items = nodes.map((n) => encodeNode(n, true));
  for (const [k, item] of items.entries())
    if (itemBytes(item) > MAX_NODE_ITEM_BYTES)
      throw new TooLargeError(
        `node ${JSON.stringify(nodes[k]!.d.spec.name)} needs ${itemBytes(item)} bytes (spec and neighbours); a DynamoDB item holds ${MAX_NODE_ITEM_BYTES}`,
      );
  await ctx.db.writeAll(items);
  const tx = ctx.db.tx();
  tx.put(encodeRun(header));
  const roots = nodes.filter((n) => n.d.status === 'READY');
  const rootBytes = roots.reduce((n, r) => n + itemBytes(encodeNode(r)), 0);
  const inline = roots.length <= INLINE_ROOTS && rootBytes <= MAX_TXN_BYTES / 2;
  if (inline) for (const n of roots) tx.put(encodeNode(n), 'any');
  delta.addTo(tx);
  // Rule 13: the deadline's timer commits with the run.
  armDeadline(tx, id, deadline);
  // Rule 17: the request id is taken in the commit itself; a start that finds it taken returns that run.
  if (identity.requestId !== undefined) tx.put({ ...keyItem(requestKey(identity.requestId)), run: S(id) });
  if (!(await ctx.db.commit(tx))) {
    const earlier =
      identity.requestId !== undefined ? await requestedRun(ctx, identity.requestId) : undefined;
    if (earlier) return earlier;
    return startRun(ctx, given, options);
  }
  if (!inline) await showRoots(ctx, id, roots);
  for (const n of roots) emitReady(ctx, n);
  return {
    id,
    createdAt: rfc3339(now),
    ...(deadline ? { deadlineAt: rfc3339(deadline) } : {}),
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
    ...structuredClone(identity),
  };
}

/** The run an earlier start with this request id created, while it is kept. */
async function requestedRun(ctx: DynamoContext, requestId: string): Promise<Run | undefined> {
  const item = await ctx.db.get(requestKey(requestId));
  if (!item) return undefined;
  try {
    return await inspectRun(ctx, item.run!.S!);
  } catch (e) {
    // Retention deleted the run (and its request item) since the read above.
    if ((e as { code?: string }).code === 'not_found') return undefined;
    throw e;
  }
}

/** Puts a big start's READY roots into the ready index after its header, a transaction's budget at a time. */
async function showRoots(ctx: DynamoContext, runId: string, roots: NodeItem[]): Promise<void> {
  let at = 0;
  while (at < roots.length) {
    const tx = ctx.db.tx();
    const chunk: NodeItem[] = [];
    for (; at < roots.length && chunk.length < INLINE_ROOTS; at++) {
      const item = encodeNode(roots[at]!);
      if (chunk.length > 0 && !tx.fits(1, itemBytes(item))) break;
      tx.put(item, roots[at]!.v);
      chunk.push(roots[at]!);
    }
    if (await ctx.db.commit(tx)) continue;
    // A root claimed meanwhile (by name) has moved on: put the others, as they are now.
    const fresh = await ctx.db.getMany(chunk.map((n) => nodeKey(runId, n.d.spec.name)));
    const again = ctx.db.tx();
    for (const item of fresh.values()) {
      const n = decodeNode(item);
      if (n.d.status === 'READY') again.put(encodeNode(n), n.v);
    }
    await ctx.db.commit(again);
  }
}
