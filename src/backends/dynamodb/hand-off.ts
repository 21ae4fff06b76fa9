import { handOffPlace } from '../../model/index.js';
import type { ClaimedNode, FinishRequest, HandOff } from '../../protocol/index.js';
import {
  claimed,
  type Records,
  recordClaims,
  runningUnder,
  type Tried,
  takeRecordedInputs,
} from './claim.js';
import type { ClaimEntry } from './claim-records.js';
import type { Delta, DynamoContext } from './context.js';
import { mk, type Tx } from './db.js';
import {
  decodeNode,
  encodeNode,
  moved,
  type NodeData,
  type NodeItem,
  nodeKey,
  type RunData,
} from './items.js';
import { inBackground, releaseClaims } from './release.js';
import { armTimeout } from './timers.js';

/**
 * Rule 21 on DynamoDB: dependents a finish makes READY go straight to RUNNING
 * under claims for the finishing process, in the finish's own transaction.
 * Each is the judged dependent's write with a claim added (same item, same
 * version condition), so a hand-off writes no node item of its own and reads
 * nothing: its inputs are recorded on it (`ins`). Once per lease the
 * transaction also checks the lease is live and records the claims
 * (claim-records.ts), as a claim transaction does; a lapsed lease refuses the
 * whole finish, which then goes again without a hand-off. The finished node
 * keeps the claims it handed off (`ho`), so a finish retried in doubt that
 * recognises its own commit answers them too.
 */
export interface HandOffPlan {
  runId: string;
  leaseId: string;
  /** The handed-off nodes as they will be committed. */
  nodes: { item: NodeItem; tried: Tried; upIndex: Map<string, number>; empty: Set<string> }[];
}

/**
 * Takes up to the offer's size of the judged dependents that became READY
 * (claimable now, inputs recorded, a runtime the offer runs), replacing their
 * writes in `judged` and moving the header's and counters' READY to RUNNING.
 */
export function takeHandOffs(
  ctx: DynamoContext,
  runId: string,
  judged: NodeItem[],
  offer: HandOff,
  run: RunData,
  delta: Delta,
  now: number,
): HandOffPlan | undefined {
  const nodes: HandOffPlan['nodes'] = [];
  for (let k = 0; k < judged.length && nodes.length < offer.agentIds.length; k++) {
    const w = judged[k]!;
    const agentId = handOffPlace(offer, nodes.length, w.d.spec.runtime);
    // Claimable now with its inputs recorded: a claim would read nothing either.
    if (w.d.status !== 'READY' || w.d.readyAt || !w.d.ins || agentId === undefined) continue;
    const claim = {
      id: ctx.ids.next(now),
      agentId,
      metadata: {},
      leaseId: offer.leaseId,
      orphaned: false,
    };
    const upIndex = new Map<string, number>();
    const empty = new Set<string>();
    const d = runningUnder(w.d, claim, now);
    d.inputs = takeRecordedInputs(w.d.ins, upIndex, empty);
    const item = { ...w, d };
    judged[k] = item;
    // Its finish reads its dependents with its node and batches by their number, as after a claim.
    ctx.downstream.set(runId, d.spec.name, d.down);
    moved(run, 'READY', 'RUNNING');
    delta.move('READY', 'RUNNING');
    nodes.push({ item, tried: { claimId: claim.id, orphan: false }, upIndex, empty });
  }
  return nodes.length > 0 ? { runId, leaseId: offer.leaseId, nodes } : undefined;
}

/** The claims a plan hands off, as the finished node keeps them (`ho`): [node, claim id]. */
export const handedOffMark = (p: HandOffPlan): [string, string][] =>
  p.nodes.map((n) => [n.item.d.spec.name, n.tried.claimId]);

/** Per lease, one liveness check and one claim record for the plans' claims; each claim's timeout timer. */
export function addHandOffs(ctx: DynamoContext, tx: Tx, plans: HandOffPlan[]): Records {
  const leases = new Map<string, ClaimEntry[]>();
  for (const p of plans) {
    const entries = leases.get(p.leaseId) ?? [];
    for (const n of p.nodes) {
      entries.push({ claimId: n.tried.claimId, runId: p.runId, node: n.item.d.spec.name });
      armTimeout(tx, n.item.d, p.runId, n.tried.claimId);
    }
    leases.set(p.leaseId, entries);
  }
  return recordClaims(ctx, tx, leases);
}

/** After the commit: the records followed, each node remembered for its finish, and answered as claimed. */
export async function handedOff(ctx: DynamoContext, plan: HandOffPlan | undefined): Promise<ClaimedNode[]> {
  if (!plan) return [];
  for (const n of plan.nodes) ctx.nodes.put(encodeNode(n.item));
  return Promise.all(
    plan.nodes.map((n) =>
      claimed(ctx, plan.runId, n.item.d, n.tried, { upIndex: n.upIndex, empty: n.empty }),
    ),
  );
}

/** A finish that recognised its own commit in doubt: the claims it handed off that still hold. */
export async function recoverHandOffs(
  ctx: DynamoContext,
  runId: string,
  mark: [string, string][] | undefined,
): Promise<ClaimedNode[]> {
  if (!mark || mark.length === 0) return [];
  const read = await ctx.db.getMany(mark.map(([node]) => nodeKey(runId, node)));
  const out: ClaimedNode[] = [];
  for (const [node, claimId] of mark) {
    const item = read.get(mk(nodeKey(runId, node)));
    const d: NodeData | undefined = item && decodeNode(item).d;
    if (d?.status !== 'RUNNING' || d.claim?.id !== claimId || d.claim.orphaned) continue;
    out.push(await claimed(ctx, runId, d, { claimId, orphan: false }));
  }
  return out;
}

/**
 * A finish with an offer that failed with an error its caller does not
 * repeat on: if its commit landed after all (its mark on the node), the
 * claims it handed off are given back, their nodes READY again, rather than
 * held under a live lease by nobody.
 */
export function giveBackHandOffs(ctx: DynamoContext, req: FinishRequest, nonce: string): void {
  inBackground(async () => {
    const item = await ctx.db.get(nodeKey(req.runId, req.node));
    const d = item && decodeNode(item).d;
    if (!d?.ho || d.lastClaim !== req.claimId || d.lf !== nonce) return;
    await releaseClaims(
      ctx,
      d.ho.map(([node, claimId]) => ({ runId: req.runId, node, claimId })),
    );
  });
}
