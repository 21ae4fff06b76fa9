import type { ClaimRef } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { readNode } from './node-read.js';
import { encodeState } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { dropStreamed } from './output.js';
import type { NodeRecord } from './records.js';
import { del, leaseIs, modIs, put, valueIs } from './store.js';
import { dropTimeout } from './work-items.js';

/**
 * Rule 20 on etcd: a claim given back is the claim's READY branch undone, in
 * one transaction fenced like a finish (the node's and the run's mod
 * revisions, the claim key's value and lease): the node READY with its queue
 * key written (which announces it, rule 8), no attempt, the claim, running
 * and timeout keys gone. A claim that no longer holds changes nothing.
 */
export async function releaseClaim(ctx: EtcdContext, ref: ClaimRef): Promise<boolean> {
  const { keys, store } = ctx;
  const released = await optimistic(
    store,
    `release of ${ref.runId}/${ref.node}`,
    async (): Promise<Decision<{ next: NodeRecord; rev: string } | undefined>> => {
      const r = await store.retrying('release', () => readNode(ctx, ref.runId, ref.node, false));
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
        return { done: undefined };
      const { rec } = node;
      const rt = rec.spec.runtime;
      const claimKey = keys.claim(rt, ref.runId, ref.node);
      const next: NodeRecord = { ...rec, s: 'READY', c: undefined, o: undefined, ra: undefined };
      return {
        compare: [
          modIs(keys.node(ref.runId, ref.node), node.rev),
          modIs(keys.run(ref.runId), r.run.rev),
          valueIs(claimKey, Buffer.from(c.id)),
          leaseIs(claimKey, c.lease),
        ],
        success: [
          put(keys.node(ref.runId, ref.node), encodeState(next)),
          del(claimKey),
          del(keys.running(rt, ref.runId, ref.node)),
          del(keys.openNode('U', ref.runId, ref.node)),
          put(keys.openNode('R', ref.runId, ref.node), Buffer.from(rt)),
          put(keys.ready(rt, ref.runId, ref.node), Buffer.alloc(0)),
          ...dropStreamed(ctx, ref.runId, rec),
          ...dropTimeout(keys, ref.runId, ref.node, rec),
        ],
        resultOf: (committed) => ({ next, rev: committed.header.revision }),
      };
    },
  );
  if (!released) return false;
  ctx.seen.setNode(ref.runId, released.next, released.rev);
  return true;
}
