import { checkClaimRefs, runStatus } from '../../model/index.js';
import type { ClaimRef } from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode, emitReady } from './context.js';
import { mk } from './db.js';
import {
  claimHeader,
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  moved,
  type NodeData,
  next,
  nodeKey,
} from './items.js';
import { disarmTimeout } from './timers.js';

/**
 * Rule 20: claims given back, each the claim's READY branch undone in one
 * transaction conditioned on the node's version as read (which holds the
 * claim, the fence of rule 4) and on the run being neither cancelled nor
 * resumed: the node READY again (no attempt, its attempt number kept), the
 * claim gone from its lease, its timeout disarmed, the counts moved back.
 * A claim that no longer holds changes nothing (false). Rare (an agent's
 * shutdown), so one transaction per claim.
 */
export async function releaseClaims(ctx: DynamoContext, claims: ClaimRef[]): Promise<boolean[]> {
  checkClaimRefs(claims);
  return Promise.all(
    claims.map(async (c) => {
      const released = await releaseClaim(ctx, c);
      // Released or no longer held: either way the claim has ended.
      ctx.claimRecords.ended(c.claimId);
      return released;
    }),
  );
}

async function releaseClaim(ctx: DynamoContext, ref: ClaimRef): Promise<boolean> {
  for (;;) {
    const read = await ctx.db.getMany([nodeKey(ref.runId, ref.node), headerKey(ref.runId)]);
    const headerItem = read.get(mk(headerKey(ref.runId)));
    const nodeItem = read.get(mk(nodeKey(ref.runId, ref.node)));
    if (!headerItem || !nodeItem) return false;
    const header = decodeRun(headerItem);
    const node = decodeNode(nodeItem);
    const claim = node.d.claim;
    if (node.d.status !== 'RUNNING' || claim?.id !== ref.claimId || claim.orphaned || header.d.cancelled)
      return false;
    const d: NodeData = { ...node.d, status: 'READY', claim: undefined, readyAt: 0, seq: 0, live: 0 };
    const tx = ctx.db.tx();
    tx.putNode(encodeNode(next(node, d)), node.v);
    // A claim's header change undone: one node RUNNING → READY, under the same conditions.
    claimHeader(tx, ref.runId, -1);
    disarmTimeout(tx, node.d, ref.runId, claim.id);
    const delta = new Delta();
    delta.move('RUNNING', 'READY');
    delta.addTo(tx);
    if (!(await ctx.db.commit(tx))) continue;
    const hd = structuredClone(header.d);
    moved(hd, 'RUNNING', 'READY');
    const released = next(node, d);
    emitNode(ctx, released, runStatus(hd.counts));
    // Committed READY at its version: this process's subscribers take it without an index query.
    emitReady(ctx, released);
    ctx.bus.emit('run', ref.runId);
    return true;
  }
}

/** How long a give-back keeps trying while the store does not answer; past it, the lease's lapse recovers them. */
const GIVE_BACK_FOR_MS = 120_000;

/**
 * Claims committed but never answered to their claimer (the store went away
 * between the commit and the reads that answer it) are held under a live
 * lease by nobody: given back in the background, retried until the store
 * answers, so their nodes are READY again at once. Should this process die
 * first, its lease lapses and orphans them (rule 3).
 */
export function giveBack(ctx: DynamoContext, claims: ClaimRef[]): void {
  inBackground(() => releaseClaims(ctx, claims));
}

/** Runs `work` until it succeeds, backing off, for at most GIVE_BACK_FOR_MS; nobody waits for it. */
export function inBackground(work: () => Promise<unknown>): void {
  const until = Date.now() + GIVE_BACK_FOR_MS;
  const attempt = async (delay: number): Promise<void> => {
    try {
      await work();
    } catch {
      if (Date.now() + delay > until) return;
      await new Promise<void>((r) => setTimeout(r, delay).unref());
      return attempt(Math.min(delay * 2, 5_000));
    }
  };
  void attempt(100);
}
