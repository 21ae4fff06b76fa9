import {
  checkStartOptions,
  deadlineAt,
  type Edge,
  type GraphSpec,
  initialStatus,
  normalizeNodeSpec,
  openTally,
  planStart,
  type Run,
  type RunIdentity,
  rfc3339,
  runStatus,
  topology,
} from '../../model/index.js';
import { TooLargeError } from '../../protocol/errors.js';
import type { StartOptions } from '../../protocol/repository.js';
import { Batcher, BatchNotCommitted } from '../batcher.js';
import { Delta, type DynamoContext, emitReady } from './context.js';
import { type Item, itemBytes, type Key, N, S, sleep, type Tx } from './db.js';
import {
  decodeNode,
  encodeNode,
  encodeRun,
  headerKey,
  keyItem,
  type NodeItem,
  nodeKey,
  type RunItem,
  requestKey,
  runPk,
  WORK_PK,
} from './items.js';
import {
  BATCH_START_ITEMS,
  DYNAMODB_MAX_ITEM_BYTES,
  DYNAMODB_MAX_TXN_BYTES,
  DYNAMODB_MAX_TXN_ITEMS,
  INLINE_ROOTS,
  INPUT_ENTRY_BYTES,
  MAX_NODE_ITEM_BYTES,
  MAX_TXN_BYTES,
  NODE_STATE_BYTES,
  WAITING_ITEM_BYTES,
} from './limits.js';
import { inspectRun } from './reads.js';
import { armDeadline } from './timers.js';
import { WaitingNodes } from './waiting.js';
import { getWorkflow } from './workflows.js';

/** A start decided and encoded, not yet committed: what a batch of starts writes. */
interface Planned {
  header: RunItem;
  nodes: NodeItem[];
  /** The node items as first written: READY roots without their ready-index attributes. */
  hidden: Item[];
  roots: NodeItem[];
  /** Whether the roots go in the header's transaction when the start commits alone (else after it, in chunks). */
  inlineAlone: boolean;
  rootBytes: number;
  /** The `w#` item holding the WAITING nodes, when they are not written as items (waiting.ts), and its entries. */
  waiting: { item: Item; nodes: Map<string, string> } | undefined;
  delta: Delta;
  deadline: number | undefined;
  identity: RunIdentity;
  edges: Edge[];
  /** Node items already written: all but the roots, and whether the roots too (a batch that did not commit). */
  written: boolean;
  rootsWritten: boolean;
}

/**
 * Rule 1, checked and planned: the run's id, header and node items. Answers
 * the earlier run instead when the request id (rule 17) already started one.
 */
async function planRun(
  ctx: DynamoContext,
  given: GraphSpec | undefined,
  options: StartOptions,
): Promise<Planned | Run> {
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
        ins: {},
        abr: 0,
        seq: 0,
        live: 0,
      },
    };
  });
  // READY nodes join the ready index only once the header exists: no subscriber sees a run not yet started.
  const hidden = nodes.map((n) => encodeNode(n, true));
  for (const [k, item] of hidden.entries()) {
    const n = nodes[k]!.d;
    const inputs = n.up.reduce((sum, u) => sum + 2 * Buffer.byteLength(u) + INPUT_ENTRY_BYTES, 0);
    const most = itemBytes(item) + inputs + NODE_STATE_BYTES;
    if (itemBytes(item) > MAX_NODE_ITEM_BYTES || most > DYNAMODB_MAX_ITEM_BYTES)
      throw new TooLargeError(
        `node ${JSON.stringify(n.spec.name)} could need ${most} bytes once running (its spec and ${n.up.length + n.down.length} neighbours' names, ${n.up.length} inputs, claim and attempt metadata); a DynamoDB item holds ${DYNAMODB_MAX_ITEM_BYTES}`,
      );
  }
  const roots = nodes.filter((n) => n.d.status === 'READY');
  // A small run's WAITING nodes are one item until each is first judged: at version 0, absent (waiting.ts).
  const waitingData = new Map<string, string>();
  for (const [k, n] of nodes.entries())
    if (n.d.status === 'WAITING') waitingData.set(n.d.spec.name, hidden[k]!.d!.S!);
  const waiting = waitingData.size > 0 ? WaitingNodes.encode(id, waitingData) : undefined;
  const lazy = waiting !== undefined && itemBytes(waiting) <= WAITING_ITEM_BYTES;
  if (lazy)
    for (const [k, n] of nodes.entries())
      if (n.d.status === 'WAITING') {
        n.v = 0;
        hidden[k]!.v = N(0);
      }
  const rootBytes = roots.reduce((n, r) => n + itemBytes(encodeNode(r)), 0);
  return {
    header,
    nodes,
    hidden,
    roots,
    inlineAlone: roots.length <= INLINE_ROOTS && rootBytes <= MAX_TXN_BYTES / 2,
    rootBytes,
    waiting: lazy ? { item: waiting, nodes: waitingData } : undefined,
    delta,
    deadline,
    identity,
    edges: spec.edges,
    written: false,
    rootsWritten: false,
  };
}

/**
 * Items a start puts in its header's transaction besides its inline roots:
 * header, request id, deadline timer, `w#`, and the roots' work item when its
 * roots are shown after the header.
 */
const startOwnItems = (p: Planned) => 4 + (p.waiting ? 1 : 0);

/**
 * The work item of a start whose READY roots enter the ready index after its
 * header (too many to go with it): it commits with the header, so should the
 * starting process die before every root is shown, any process's sweeper
 * shows the rest (finishRoots); without it those roots stayed out of the
 * index, never offered to a subscriber, and the run never ended.
 */
const rootsWorkKey = (runId: string): Key => ({ pk: WORK_PK, sk: `roots#${runId}` });

/**
 * Writes the node items of `starts` not yet written, in BatchWriteItems: all
 * but the roots that go in the header's transaction (`inline`), whose one
 * write there is their only one, and the WAITING nodes of a start with a `w#`
 * item (written when first judged). Only ever before a header commit: a start
 * goes inline alone whenever it went inline in a batch, so a root left out
 * here is never written hidden after its header made it visible.
 */
async function writeNodes(
  ctx: DynamoContext,
  starts: Planned[],
  inline: (p: Planned) => boolean,
): Promise<void> {
  const items: Item[] = [];
  for (const p of starts) {
    const withRoots = !inline(p) && !p.rootsWritten;
    for (const [k, n] of p.nodes.entries()) {
      const root = n.d.status === 'READY';
      if (root ? withRoots : !p.written && !p.waiting) items.push(p.hidden[k]!);
    }
  }
  await ctx.db.writeAll(items);
  for (const p of starts) {
    p.written = true;
    if (!inline(p)) p.rootsWritten = true;
  }
}

/** Adds a start's header, inline roots, `w#`, deadline timer and request id to its header's transaction. */
function addStart(tx: Tx, p: Planned, inline: boolean): void {
  tx.put(encodeRun(p.header));
  if (p.waiting) tx.put(p.waiting.item, 'any');
  if (inline) for (const n of p.roots) tx.put(encodeNode(n), 'any');
  else
    tx.put({
      ...keyItem(rootsWorkKey(p.header.id)),
      v: N(0),
      d: S(JSON.stringify({ kind: 'roots', run: p.header.id })),
    });
  // Rule 13: the deadline's timer commits with the run.
  armDeadline(tx, p.header.id, p.deadline);
  // Rule 17: the request id is taken in the commit itself; a start that finds it taken returns that run.
  if (p.identity.requestId !== undefined)
    tx.put({ ...keyItem(requestKey(p.identity.requestId)), run: S(p.header.id) });
}

/** After the header's commit: the roots not put with it enter the ready index, and this process's subscribers hear. */
async function started(ctx: DynamoContext, p: Planned, inline: boolean): Promise<Run> {
  if (!inline) {
    await showRoots(ctx, p.header.id, p.roots);
    await dropRootsWork(ctx, p.header.id);
  }
  for (const n of p.roots) emitReady(ctx, n);
  if (p.waiting) ctx.waiting.written(p.header.id, p.waiting.nodes);
  // Its WAITING nodes as written (or, in `w#`, at version 0): the finishes that judge them first (usually
  // this process's, as they are the dependents of roots it announced) start from these instead of reading
  // (written-nodes.ts).
  for (const [k, n] of p.nodes.entries()) if (n.d.status === 'WAITING') ctx.nodes.put(p.hidden[k]!);
  const { header, nodes, deadline, identity } = p;
  return {
    id: header.id,
    createdAt: rfc3339(header.d.createdAt),
    ...(deadline ? { deadlineAt: rfc3339(deadline) } : {}),
    nodes: nodes.map((n) => ({
      spec: n.d.spec,
      status: n.d.status,
      attempts: [],
      startedAt: '',
      finishedAt: '',
      inputs: {},
    })),
    edges: p.edges.map((e) => ({ source: e.source, destination: e.destination })),
    status: runStatus(header.d.counts),
    ...structuredClone(identity),
  };
}

/**
 * One start in its own transaction: nodes first, then the header with the
 * stats counters. A commit that fails is judged by reading: the run's own
 * header there means the commit was ours (a reply lost, a batch that
 * committed after all); the request id taken means another start's run is
 * the answer; else (a conflict on the stats shard) it goes again.
 */
async function commitAlone(ctx: DynamoContext, p: Planned): Promise<Run> {
  const inline = (q: Planned) => q.inlineAlone;
  await writeNodes(ctx, [p], inline);
  for (let delay = 10; ; delay = Math.min(delay * 2, 500)) {
    const tx = ctx.db.tx();
    addStart(tx, p, p.inlineAlone);
    p.delta.addTo(tx);
    if (await ctx.db.commit(tx)) return started(ctx, p, p.inlineAlone);
    // An earlier commit of ours may have left its roots out of the index (a batch short of room): put them (again).
    if (await ctx.db.get(headerKey(p.header.id))) return started(ctx, p, !p.rootsWritten);
    const requestId = p.identity.requestId;
    const earlier = requestId !== undefined ? await requestedRun(ctx, requestId) : undefined;
    if (earlier) return earlier;
    // The id's item outlives its run only while retention is deleting the run's partition.
    if (requestId !== undefined) await sleep(delay);
  }
}

interface StartCall {
  planned: Planned;
}

type StartOutcome = { run: Run } | { error: unknown };

/**
 * Rule 1. The node items not in the header's transaction are written first,
 * in batches (idempotent puts of items nobody reads yet), then the run header
 * in one transaction with the stats counters: the run is visible (listed,
 * inspectable, claimable) only once its header exists, so a start cut short
 * leaves no half a run, only unreachable node items. A small run has none to
 * write first: its roots and one `w#` item of its WAITING nodes go with the
 * header (waiting.ts).
 *
 * This process's concurrent starts share those writes (see Batcher): one
 * round of BatchWriteItems for all their nodes written first, then one
 * transaction with every header, inline roots, `w#`, timer and request id,
 * and one counter shard.
 * One failed condition (a request id another process took meanwhile)
 * cancels the whole transaction: then each start goes again alone, its nodes
 * already written, and recognises its own header should the batch have
 * committed after all.
 */
export class StartBatcher {
  private readonly batcher: Batcher<StartCall, StartOutcome>;

  constructor(private readonly ctx: DynamoContext) {
    this.batcher = new Batcher(
      {
        maxCalls: 32,
        maxWeight: BATCH_START_ITEMS,
        weight: (c) => startOwnItems(c.planned) + (c.planned.inlineAlone ? c.planned.roots.length : 0),
        // Two starts with one request id would write one item twice in a transaction: never in one batch.
        key: (c) =>
          c.planned.identity.requestId === undefined ? [] : `req\u0000${c.planned.identity.requestId}`,
        isolate: (e) => e instanceof BatchNotCommitted,
      },
      (calls) => this.send(calls),
    );
  }

  async start(given: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    const planned = await planRun(this.ctx, given, options);
    if (!('header' in planned)) return planned;
    const outcome = await this.batcher.submit({ planned });
    if ('error' in outcome) throw outcome.error;
    return outcome.run;
  }

  private async send(calls: StartCall[]): Promise<StartOutcome[]> {
    const alone = async (p: Planned): Promise<StartOutcome> => {
      try {
        return { run: await commitAlone(this.ctx, p) };
      } catch (error) {
        return { error };
      }
    };
    if (calls.length === 1) return [await alone(calls[0]!.planned)];
    // The batch's weight keeps the items within limits.ts; roots go inline while their bytes fit too.
    const tx = this.ctx.db.tx();
    const inline = new Set<Planned>();
    let bytes = 0;
    for (const { planned: p } of calls)
      if (p.inlineAlone && bytes + p.rootBytes <= MAX_TXN_BYTES / 2) {
        inline.add(p);
        bytes += p.rootBytes;
      }
    const delta = new Delta();
    const ps = calls.map((c) => c.planned);
    await writeNodes(this.ctx, ps, (p) => inline.has(p));
    for (const p of ps) {
      addStart(tx, p, inline.has(p));
      delta.merge(p.delta);
    }
    delta.addTo(tx);
    if (tx.size > DYNAMODB_MAX_TXN_ITEMS || tx.bytes > DYNAMODB_MAX_TXN_BYTES) throw new BatchNotCommitted();
    if (!(await this.ctx.db.commit(tx))) throw new BatchNotCommitted();
    return Promise.all(
      ps.map(async (p): Promise<StartOutcome> => {
        try {
          return { run: await started(this.ctx, p, inline.has(p)) };
        } catch (error) {
          return { error };
        }
      }),
    );
  }
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
      if (n.d.status === 'READY') again.putNode(encodeNode(n), n.v);
    }
    await ctx.db.commit(again);
  }
}

async function dropRootsWork(ctx: DynamoContext, runId: string): Promise<void> {
  const tx = ctx.db.tx();
  tx.del(rootsWorkKey(runId));
  await ctx.db.commit(tx);
}

/**
 * A sweeper's part of a start that died before its roots were all shown (the
 * `roots#` work item): every node item of the run that belongs in the ready
 * index but was written without its attributes goes in, as it is now; then
 * the item goes. Repeatable: a node shown or moved on since is left alone.
 */
export async function finishRoots(ctx: DynamoContext, runId: string): Promise<void> {
  const items = await ctx.db.partition(runPk(runId), 'n#');
  const hidden: NodeItem[] = [];
  for (const item of items) {
    const n = decodeNode(item);
    if (item.ev === undefined && encodeNode(n).ev !== undefined) hidden.push(n);
  }
  await showRoots(ctx, runId, hidden);
  for (const n of hidden) emitReady(ctx, n);
  await dropRootsWork(ctx, runId);
}
