import type { ICompare, IRequestOp } from 'etcd3';
import type { ClaimRef } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { readNode } from './node-read.js';
import { encodeState } from './nodes.js';
import { MAX_ROUNDS } from './optimistic.js';
import { dropStreamed } from './output.js';
import type { NodeRecord } from './records.js';
import { del, leaseIs, modIs, put, valueIs } from './store.js';
import { timeoutItem, workItemKey } from './work-items.js';

/**
 * Rule 20 on etcd: a claim given back is the claim's READY branch undone, in
 * one transaction fenced like a finish (the node's and the run's mod
 * revisions, the claim key's value and lease): the node READY with its queue
 * key written (which announces it, rule 8), no attempt, the claim, running
 * and timeout keys gone. A claim that no longer holds changes nothing.
 */
export async function releaseClaim(ctx: EtcdContext, ref: ClaimRef): Promise<boolean> {
  const { keys, store } = ctx;
  return store.retrying('release', async () => {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const r = await readNode(ctx, ref.runId, ref.node, false);
      const node = r.node;
      const c = node?.rec.c;
      if (
        node?.rec.s !== 'RUNNING' ||
        c?.id !== ref.claimId ||
        !r.claimLive ||
        r.claimValue !== c.id ||
        !r.run ||
        r.run.rec.cancelled
      )
        return false;
      const { rec, rev } = node!;
      const rt = rec.spec.runtime;
      const claimKey = keys.claim(rt, ref.runId, ref.node);
      const compare: ICompare[] = [
        modIs(keys.node(ref.runId, ref.node), rev),
        modIs(keys.run(ref.runId), r.run.rev),
        valueIs(claimKey, Buffer.from(c.id)),
        leaseIs(claimKey, c.lease),
      ];
      const next: NodeRecord = { ...rec, s: 'READY', c: undefined, o: undefined, ra: undefined };
      const ops: IRequestOp[] = [
        put(keys.node(ref.runId, ref.node), encodeState(next)),
        del(claimKey),
        del(keys.running(rt, ref.runId, ref.node)),
        del(keys.openNode('U', ref.runId, ref.node)),
        put(keys.openNode('R', ref.runId, ref.node), Buffer.from(rt)),
        put(keys.ready(rt, ref.runId, ref.node), Buffer.alloc(0)),
        ...dropStreamed(ctx, ref.runId, rec),
        ...(rec.spec.timeout ? [del(workItemKey(keys, ref.runId, timeoutItem(ref.node)))] : []),
      ];
      const res = await store.txn({ compare, success: ops });
      if (res.succeeded) {
        ctx.seen.setNode(ref.runId, next, res.header.revision);
        return true;
      }
    }
    return false;
  });
}
