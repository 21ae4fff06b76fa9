import { checkMetadata, checkNodeName, checkRunId, claimable } from '../../model/index.js';
import {
  type ClaimedNode,
  type ClaimRequest,
  LeaseExpiredError,
  NotFoundError,
  nodeNotFound,
} from '../../protocol/index.js';
import { Delta, type DynamoContext, emitNode } from './context.js';
import { mk } from './db.js';
import {
  checkHeaderOpen,
  claimHeader,
  decodeNode,
  decodeRun,
  encodeNode,
  headerKey,
  keyItem,
  leaseClaimKey,
  leaseKey,
  type NodeData,
  next,
  nodeKey,
} from './items.js';
import { readNodeState } from './node-read.js';
import { armTimeout, disarmTimeout } from './timers.js';

/**
 * Rule 2 (and rule 3's recovery): one transaction that moves the node to
 * RUNNING under a new claim, conditioned on the node's and the run header's
 * versions as read (so among concurrent claimers exactly one commits) and on
 * the lease being live; it also records the claim under the lease, so a lapse
 * finds it. An orphaned claim is replaced the same way.
 */
export async function claimNode(ctx: DynamoContext, req: ClaimRequest): Promise<ClaimedNode | undefined> {
  checkRunId(req.runId);
  checkNodeName(req.node);
  checkMetadata(req.metadata);
  /** The claim id of a commit whose outcome is unknown (it failed): seen on the node, it is ours. */
  let tried: { claimId: string; orphan: boolean; prev?: { id: string; agentId: string } } | undefined;
  for (;;) {
    const read = await ctx.db.getMany([
      nodeKey(req.runId, req.node),
      headerKey(req.runId),
      leaseKey(req.leaseId),
    ]);
    const lease = read.get(mk(leaseKey(req.leaseId)));
    if (!lease || lease.lapsed) throw new LeaseExpiredError(req.leaseId);
    const headerItem = read.get(mk(headerKey(req.runId)));
    if (!headerItem) throw new NotFoundError('run', req.runId);
    const nodeItem = read.get(mk(nodeKey(req.runId, req.node)));
    if (!nodeItem) throw nodeNotFound(req.runId, req.node);
    const header = decodeRun(headerItem);
    const node = decodeNode(nodeItem);
    if (tried && node.d.status === 'RUNNING' && node.d.claim?.id === tried.claimId)
      return {
        runId: req.runId,
        claimId: tried.claimId,
        attempt: node.d.attempts + 1,
        orphan: tried.orphan,
        previousClaimId: tried.prev?.id,
        previousAgentId: tried.prev?.agentId,
        node: await readNodeState(ctx, req.runId, node.d, await upstreamIndex(ctx, req.runId, node.d)),
      };
    ctx.downstream.set(req.runId, req.node, node.d.down);
    // A cancelled run claims nothing; one being resumed waits for its retry to finish (rule 15).
    if (header.d.cancelled || header.d.resuming) return undefined;
    const prev = node.d.claim;
    const orphan = node.d.status === 'RUNNING' && prev?.orphaned === true;
    if (node.d.status !== 'READY' && !orphan) return undefined;
    const now = ctx.clock.now();
    // Rule 5: a retry waiting out its delay is not claimable yet.
    if (!orphan && !claimable(node.d.readyAt, now)) return undefined;
    const claimId = ctx.ids.next(now);
    const d: NodeData = {
      ...node.d,
      claim: {
        id: claimId,
        agentId: req.agentId,
        metadata: req.metadata ?? {},
        leaseId: req.leaseId,
        orphaned: false,
      },
    };
    const upIndex = new Map<string, number>();
    const tx = ctx.db.tx();
    const delta = new Delta();
    if (!orphan) {
      // Inputs: each upstream node's last successful attempt (rules 2 and 14).
      const ups = [
        ...(node.d.up.length > 0
          ? await ctx.db.getMany(node.d.up.map((u) => nodeKey(req.runId, u)))
          : new Map()
        ).values(),
      ].map((u) => decodeNode(u).d);
      d.inputs = {};
      for (const u of ups) {
        upIndex.set(u.spec.name, u.i);
        if (u.status === 'COMPLETED' && u.last === 'SUCCESS') d.inputs[u.spec.name] = u.attempts;
      }
      d.status = 'RUNNING';
      d.startedAt = now;
      d.finishedAt = 0;
      d.seq = 0;
      d.live = 0;
      delta.move('READY', 'RUNNING');
      claimHeader(tx, req.runId);
    } else {
      checkHeaderOpen(tx, req.runId);
      tx.del(leaseClaimKey(prev.leaseId, req.runId, req.node));
    }
    tx.put(encodeNode(next(node, d)), node.v);
    armTimeout(tx, d, req.runId, claimId);
    if (orphan) disarmTimeout(tx, node.d, req.runId, prev.id);
    tx.check(leaseKey(req.leaseId), 'attribute_exists(pk) AND attribute_not_exists(lapsed)');
    tx.put({ ...keyItem(leaseClaimKey(req.leaseId, req.runId, req.node)), claim: { S: claimId } }, 'any');
    delta.addTo(tx);
    tried = { claimId, orphan, prev: orphan ? prev : undefined };
    if (!(await ctx.db.commit(tx))) continue;
    emitNode(ctx, next(node, d), 'RUNNING');
    ctx.bus.emit('run', req.runId);
    return {
      runId: req.runId,
      claimId,
      attempt: node.d.attempts + 1,
      orphan,
      previousClaimId: orphan ? prev.id : undefined,
      previousAgentId: orphan ? prev.agentId : undefined,
      node: await readNodeState(ctx, req.runId, d, orphan ? await upstreamIndex(ctx, req.runId, d) : upIndex),
    };
  }
}

async function upstreamIndex(ctx: DynamoContext, runId: string, d: NodeData): Promise<Map<string, number>> {
  const names = Object.keys(d.inputs);
  const ups = await ctx.db.getMany(names.map((u) => nodeKey(runId, u)));
  return new Map([...ups.values()].map((u) => [decodeNode(u).d.spec.name, decodeNode(u).d.i]));
}
