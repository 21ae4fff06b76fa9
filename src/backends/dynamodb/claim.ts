import { checkMetadata, checkNodeName, checkRunId, claimable } from '../../model/index.js';
import { type ClaimedNode, type ClaimRequest, LeaseExpiredError } from '../../protocol/index.js';
import { Batcher, BatchNotCommitted } from '../batcher.js';
import type { ClaimEntry } from './claim-records.js';
import { Delta, type DynamoContext, emitNode } from './context.js';
import { type Item, type Key, mk, type Tx } from './db.js';
import {
  type ClaimData,
  checkHeaderOpen,
  claimHeader,
  decodeNode,
  encodeNode,
  headerKey,
  leaseKey,
  type NodeData,
  type NodeItem,
  next,
  nodeKey,
  type RunItem,
  runAndNode,
} from './items.js';
import { BATCH_FINISH_ITEMS, BATCH_WINDOW_MS, DYNAMODB_MAX_TXN_ITEMS } from './limits.js';
import { readNodeState } from './node-read.js';
import { giveBack } from './release.js';
import { armTimeout, disarmTimeout } from './timers.js';

/** A claim id sent in a commit whose outcome is unknown: seen on the node, the claim is ours. */
export interface Tried {
  claimId: string;
  orphan: boolean;
  prev?: { id: string; agentId: string };
}

/**
 * Rule 2 (and rule 3's recovery): one transaction that moves the node to
 * RUNNING under a new claim, conditioned on the node's version as read (so
 * among concurrent claimers exactly one commits), on the run being neither
 * cancelled nor resumed, and on the lease being live; it also records the
 * claim under the lease, so a lapse finds it. An orphaned claim is replaced
 * the same way.
 */
export async function claimNode(
  ctx: DynamoContext,
  req: ClaimRequest,
  tried?: Tried,
): Promise<ClaimedNode | undefined> {
  checkClaim(req);
  for (;;) {
    const { read, blind } = await readForClaims(ctx, [{ req, tried }]);
    const step = decideClaim(ctx, req, read, tried, blind[0]);
    if (!('plan' in step)) return recognised(ctx, req, tried, step);
    const ups = await ctx.db.getMany(step.upKeys);
    const plan = planClaim(ctx, req, step.plan, ups);
    const tx = ctx.db.tx();
    const records = addClaims(ctx, tx, [plan]);
    tried = plan.tried;
    if (!(await ctx.db.commit(tx))) continue;
    committed(ctx, records, [plan]);
    return answer(ctx, plan);
  }
}

function checkClaim(req: ClaimRequest): void {
  checkRunId(req.runId);
  checkNodeName(req.node);
  checkMetadata(req.metadata);
}

const claimKeys = (req: ClaimRequest): Key[] => [
  nodeKey(req.runId, req.node),
  headerKey(req.runId),
  leaseKey(req.leaseId),
];

/** How long after this process made a node READY a claim here may take it unread (others' pollers take ~250 ms to see it). */
const READY_FRESH_MS = 2_000;

/**
 * What claims read first, in one round trip: each node, its run header and
 * the lease; nothing at all for a claim of a node this process itself made
 * READY moments ago with its inputs recorded (written-nodes.ts), unless the
 * call is retrying (`tried`). Such a "blind" claim is decided from that
 * item, and the commit's conditions check the rest: the node's version, the
 * run neither cancelled nor resumed, the lease live. If any fails, the
 * transaction is refused and the claim goes again reading everything.
 */
async function readForClaims(
  ctx: DynamoContext,
  calls: { req: ClaimRequest; tried?: Tried }[],
): Promise<{ read: Map<string, Item>; blind: boolean[] }> {
  const read = new Map<string, Item>();
  const keys: Key[] = [];
  const now = ctx.clock.now();
  const blind = calls.map(({ req, tried }) => {
    const key = nodeKey(req.runId, req.node);
    const item = tried
      ? undefined
      : ctx.nodes.take(
          key,
          (d) => d.status === 'READY' && claimable(d.readyAt, now) && d.ins !== undefined,
          READY_FRESH_MS,
        );
    if (item) read.set(mk(key), item);
    else keys.push(...claimKeys(req));
    return item !== undefined;
  });
  for (const [k, item] of await ctx.waiting.read(ctx.db, keys)) read.set(k, item);
  return { read, blind };
}

/** A claim that may commit: the node as read and what it becomes; `upKeys` are read next (its inputs). */
interface Decided {
  node: NodeItem;
  d: NodeData;
  orphan: boolean;
  prev?: NodeData['claim'];
}

/** Decided without a commit (`result`, started only when asked), or a plan to commit. */
type Step = { result: () => Promise<ClaimedNode | undefined> } | { plan: Decided; upKeys: Key[] };

const nothing = { result: async () => undefined };

/** Decides a claim from the node, header and lease as read (`blind`: the node only, as this process wrote it). */
function decideClaim(
  ctx: DynamoContext,
  req: ClaimRequest,
  read: Map<string, Item>,
  tried: Tried | undefined,
  blind = false,
): Step {
  let node: NodeItem;
  let header: RunItem | undefined;
  if (blind) node = decodeNode(read.get(mk(nodeKey(req.runId, req.node)))!);
  else {
    const lease = read.get(mk(leaseKey(req.leaseId)));
    if (!lease || lease.lapsed) throw new LeaseExpiredError(req.leaseId);
    ({ header, node } = runAndNode(read, req.runId, req.node));
  }
  if (tried && node.d.status === 'RUNNING' && node.d.claim?.id === tried.claimId)
    return { result: () => claimed(ctx, req.runId, node.d, tried) };
  ctx.downstream.set(req.runId, req.node, node.d.down);
  // A cancelled run claims nothing; one being resumed waits for its retry to finish (rule 15).
  if (header && (header.d.cancelled || header.d.resuming)) return nothing;
  const prev = node.d.claim;
  const orphan = node.d.status === 'RUNNING' && prev?.orphaned === true;
  if (node.d.status !== 'READY' && !orphan) return nothing;
  const now = ctx.clock.now();
  // Rule 5: a retry waiting out its delay is not claimable yet.
  if (!orphan && !claimable(node.d.readyAt, now)) return nothing;
  const claim: ClaimData = {
    id: ctx.ids.next(now),
    agentId: req.agentId,
    metadata: req.metadata ?? {},
    leaseId: req.leaseId,
    orphaned: false,
  };
  const d: NodeData = orphan ? { ...node.d, claim } : runningUnder(node.d, claim, now);
  // Inputs (rules 2 and 14): each upstream node's last successful attempt, recorded on the node as the
  // upstream nodes succeeded or, when not (a retry put the node back), read next.
  const upKeys = orphan || node.d.ins ? [] : node.d.up.map((u) => nodeKey(req.runId, u));
  return { plan: { node, d, orphan, prev }, upKeys };
}

/** A READY node RUNNING under a new claim (rule 2, and rule 21's hand-off); its inputs are set by the caller. */
export function runningUnder(d: NodeData, claim: ClaimData, now: number): NodeData {
  return { ...d, claim, status: 'RUNNING', startedAt: now, finishedAt: 0, seq: 0, live: 0 };
}

/** The inputs a node's recorded `ins` name (upstream → attempt), noting where each is and which are empty. */
export function takeRecordedInputs(
  ins: NonNullable<NodeData['ins']>,
  upIndex: Map<string, number>,
  empty: Set<string>,
): Record<string, number> {
  const inputs: Record<string, number> = {};
  for (const [name, [i, attempt, isEmpty]] of Object.entries(ins)) {
    upIndex.set(name, i);
    inputs[name] = attempt;
    if (isEmpty) empty.add(name);
  }
  return inputs;
}

/** A decided claim's writes; the run header, lease and counters are added once per batch (addClaims). */
interface ClaimPlan {
  runId: string;
  node: string;
  leaseId: string;
  /** READY → RUNNING (counts move), or an orphan taken over (they do not). */
  counted: boolean;
  items: Tx['items'];
  /** The node item as committed: remembered for the claim's finish (written-nodes.ts). */
  written: Item;
  tried: Tried;
  after: () => Promise<ClaimedNode>;
}

function planClaim(ctx: DynamoContext, req: ClaimRequest, c: Decided, ups: Map<string, Item>): ClaimPlan {
  const { node, d, orphan, prev } = c;
  const claimId = d.claim!.id;
  const upIndex = new Map<string, number>();
  const empty = new Set<string>();
  if (!orphan && node.d.ins) {
    d.inputs = takeRecordedInputs(node.d.ins, upIndex, empty);
  } else if (!orphan) {
    d.inputs = {};
    for (const key of node.d.up.map((n) => nodeKey(req.runId, n))) {
      const item = ups.get(mk(key));
      if (!item) continue;
      const u = decodeNode(item).d;
      upIndex.set(u.spec.name, u.i);
      // A SUCCESS from before a retry put it back (it then completed unreached) is no input (rule 14).
      if (u.status !== 'COMPLETED' || u.last !== 'SUCCESS' || u.attempts <= u.abr) continue;
      d.inputs[u.spec.name] = u.attempts;
      if (u.out === 0) empty.add(u.spec.name);
    }
  }
  const tx = ctx.db.tx();
  // An orphan's old record entry is stale from here (its lease lapsed and goes with its records).
  const written = encodeNode(next(node, d));
  tx.putNode(written, node.v);
  armTimeout(tx, d, req.runId, claimId);
  if (orphan) disarmTimeout(tx, node.d, req.runId, prev!.id);
  const tried: Tried = {
    claimId,
    orphan,
    prev: orphan ? { id: prev!.id, agentId: prev!.agentId } : undefined,
  };
  return {
    runId: req.runId,
    node: req.node,
    leaseId: req.leaseId,
    counted: !orphan,
    items: tx.items,
    written,
    tried,
    after: async () => {
      emitNode(ctx, next(node, d), 'RUNNING');
      ctx.bus.emit('run', req.runId);
      return claimed(ctx, req.runId, d, tried, orphan ? undefined : { upIndex, empty });
    },
  };
}

/** The claim records a transaction writes, by lease: followed once it commits (ClaimRecords.track). */
export type Records = { key: Key; claimIds: string[] }[];

/**
 * Claims' writes in one transaction: each claim's items, then per run one
 * header update (its claims' count changes, conditioned on the run being
 * open), per lease one check that it is live and one record of its claims
 * (claim-records.ts), and one counter shard.
 */
function addClaims(ctx: DynamoContext, tx: Tx, plans: ClaimPlan[]): Records {
  const runs = new Map<string, number>();
  const leases = new Map<string, ClaimEntry[]>();
  const delta = new Delta();
  for (const p of plans) {
    tx.items.push(...p.items);
    runs.set(p.runId, (runs.get(p.runId) ?? 0) + (p.counted ? 1 : 0));
    const entries = leases.get(p.leaseId) ?? [];
    entries.push({ claimId: p.tried.claimId, runId: p.runId, node: p.node });
    leases.set(p.leaseId, entries);
    if (p.counted) delta.move('READY', 'RUNNING');
  }
  for (const [runId, n] of runs) {
    if (n > 0) claimHeader(tx, runId, n);
    else checkHeaderOpen(tx, runId);
  }
  const records = recordClaims(ctx, tx, leases);
  delta.addTo(tx);
  return records;
}

/**
 * Per lease, a check that it is live and the record of its claims in this
 * transaction (claims and hand-offs alike). First in the transaction: a store
 * that applied its items in order and stopped midway (DynamoDB Local killed
 * -9) would leave a record naming claims not made, never a claim without its
 * record.
 */
export function recordClaims(ctx: DynamoContext, tx: Tx, leases: Map<string, ClaimEntry[]>): Records {
  const records: Records = [];
  const head = ctx.db.tx();
  for (const [id, entries] of leases) {
    head.check(leaseKey(id), 'attribute_exists(pk) AND attribute_not_exists(lapsed)');
    records.push({ key: ctx.claimRecords.add(head, id, entries), claimIds: entries.map((e) => e.claimId) });
  }
  tx.prepend(head);
  return records;
}

/** A committed claim as its claimer gets it; one that cannot be answered is given back, not left held by nobody. */
async function answer(ctx: DynamoContext, p: ClaimPlan): Promise<ClaimedNode> {
  try {
    return await p.after();
  } catch (e) {
    giveBack(ctx, [{ runId: p.runId, node: p.node, claimId: p.tried.claimId }]);
    throw e;
  }
}

/** A step decided without a commit: nothing, or (`tried`) the claim an earlier commit of this call made, answered as above. */
async function recognised(
  ctx: DynamoContext,
  req: ClaimRequest,
  tried: Tried | undefined,
  step: { result: () => Promise<ClaimedNode | undefined> },
): Promise<ClaimedNode | undefined> {
  try {
    return await step.result();
  } catch (e) {
    if (tried) giveBack(ctx, [{ runId: req.runId, node: req.node, claimId: tried.claimId }]);
    throw e;
  }
}

/** Claims committed: their records followed, their nodes held for their finishes. */
function committed(ctx: DynamoContext, records: Records, plans: ClaimPlan[]): void {
  for (const r of records) ctx.claimRecords.track(r.key, r.claimIds);
  for (const p of plans) ctx.nodes.put(p.written);
}

/** The claimed node as the protocol shows it. */
export async function claimed(
  ctx: DynamoContext,
  runId: string,
  d: NodeData,
  t: Tried,
  ups?: { upIndex: Map<string, number>; empty: Set<string> },
): Promise<ClaimedNode> {
  return {
    runId: runId,
    claimId: t.claimId,
    attempt: d.attempts + 1,
    orphan: t.orphan,
    previousClaimId: t.prev?.id,
    previousAgentId: t.prev?.agentId,
    node: ups
      ? await readNodeState(ctx, runId, d, ups.upIndex, ups.empty)
      : await readNodeState(ctx, runId, d, await upstreamIndex(ctx, runId, d)),
  };
}

async function upstreamIndex(ctx: DynamoContext, runId: string, d: NodeData): Promise<Map<string, number>> {
  const names = Object.keys(d.inputs);
  const ups = await ctx.db.getMany(names.map((u) => nodeKey(runId, u)));
  return new Map([...ups.values()].map((u) => [decodeNode(u).d.spec.name, decodeNode(u).d.i]));
}

interface Call {
  req: ClaimRequest;
  tried?: Tried;
}

type Outcome = { claimed: ClaimedNode | undefined } | { error: unknown };

/** Items one claim adds to a batch at most: node, timeout timer, an orphan's timer delete, its header, its lease's check and record. */
const CLAIM_ITEMS = 6;

/**
 * This process's concurrent claims as one TransactWriteItems (see Batcher):
 * one read of every call's node, header and lease, one of their inputs, each
 * decided as above, their items side by side with one header update per
 * run, one lease check per lease and one counter shard. One failed
 * condition (a node claimed elsewhere meanwhile) cancels the whole
 * transaction: then each call goes again alone with the claim id it tried,
 * so a fresh read tells whether the batch made the node its own.
 */
export class ClaimBatcher {
  private readonly batcher: Batcher<Call, Outcome>;

  constructor(private readonly ctx: DynamoContext) {
    this.batcher = new Batcher(
      {
        maxCalls: 32,
        maxWeight: BATCH_FINISH_ITEMS - 2,
        weight: () => CLAIM_ITEMS,
        key: (c) => `${c.req.runId}\u0000${c.req.node}`,
        isolate: (e) => e instanceof BatchNotCommitted,
        busyWindowMs: BATCH_WINDOW_MS,
      },
      (calls) => this.send(calls),
    );
  }

  async claim(req: ClaimRequest): Promise<ClaimedNode | undefined> {
    checkClaim(req);
    const outcome = await this.batcher.submit({ req });
    if ('error' in outcome) throw outcome.error;
    return outcome.claimed;
  }

  private async send(calls: Call[]): Promise<Outcome[]> {
    if (calls.length === 1) {
      try {
        return [{ claimed: await claimNode(this.ctx, calls[0]!.req, calls[0]!.tried) }];
      } catch (error) {
        return [{ error }];
      }
    }
    const first = await this.round(calls);
    if ('outcomes' in first) return first.outcomes;
    // Refused: if a claim in it started from this process's own write of a node (blind) that changed
    // meanwhile, the batch goes once more reading everything (every call is `tried` now, so none is
    // blind) rather than each call alone.
    const second = first.blind ? await this.round(calls) : first;
    if ('outcomes' in second) return second.outcomes;
    throw new BatchNotCommitted();
  }

  /** One read, decision and commit of the batch: its outcomes, or refused (and whether a claim in it was blind). */
  private async round(calls: Call[]): Promise<{ outcomes: Outcome[] } | { blind: boolean }> {
    const { read, blind } = await readForClaims(this.ctx, calls);
    const outcomes: Outcome[] = calls.map(() => ({ claimed: undefined }));
    const steps = calls.map((c, i) => {
      try {
        return decideClaim(this.ctx, c.req, read, c.tried, blind[i]);
      } catch (error) {
        outcomes[i] = { error };
        return undefined;
      }
    });
    const ups = await this.ctx.db.getMany(steps.flatMap((s) => (s && 'plan' in s ? s.upKeys : [])));
    const plans: (ClaimPlan | undefined)[] = steps.map((s, i) =>
      s && 'plan' in s ? planClaim(this.ctx, calls[i]!.req, s.plan, ups) : undefined,
    );
    const tx = this.ctx.db.tx();
    const records = addClaims(
      this.ctx,
      tx,
      plans.filter((p) => p !== undefined),
    );
    if (tx.size > DYNAMODB_MAX_TXN_ITEMS) throw new BatchNotCommitted();
    for (const [i, p] of plans.entries()) if (p) calls[i]!.tried = p.tried;
    if (!(await this.ctx.db.commit(tx))) return { blind: blind.some(Boolean) };
    committed(
      this.ctx,
      records,
      plans.filter((p) => p !== undefined),
    );
    const results = await Promise.all(
      calls.map(async (_call, i): Promise<Outcome> => {
        const s = steps[i];
        const p = plans[i];
        try {
          if (p) return { claimed: await answer(this.ctx, p) };
          if (s && 'result' in s)
            return { claimed: await recognised(this.ctx, calls[i]!.req, calls[i]!.tried, s) };
          return outcomes[i]!;
        } catch (error) {
          return { error };
        }
      }),
    );
    return { outcomes: results };
  }
}
