import { boundedAppend, concatBytes } from '../../model/index.js';
import { ClaimConflictError, keptLosingRaces, NotFoundError } from '../../protocol/errors.js';
import { type AppendOutputRequest, checkSeq, seqGapError } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { readNode } from './node-read.js';
import { encodeState } from './nodes.js';
import type { NodeRecord } from './records.js';
import { delPrefix, getPrefix, leaseIs, modIs, put, valueIs } from './store.js';

/**
 * Live output on etcd. Each chunk is its own key (l/…, one put of at most
 * LIMITS.maxOutputBytes: inside etcd's 1.5 MiB request limit), written in one
 * transaction with the node's streamed count (NodeRecord.o), fenced like a
 * finish by the claim key's value and lease. Finish and cancel compare the
 * node key too, so they record exactly the chunks appended before them.
 */
export async function appendOutput(ctx: EtcdContext, req: AppendOutputRequest): Promise<void> {
  checkSeq(req.seq);
  const { keys, store } = ctx;
  await store.retrying('append output', async () => {
    for (let round = 0; round < store.maxRaceRounds; round++) {
      const r = await readNode(ctx, req.runId, req.node, false);
      if (!r.node) {
        if (!r.run) throw new NotFoundError('run', req.runId);
        throw new NotFoundError('node', `${req.runId}/${req.node}`);
      }
      const { rec, rev } = r.node;
      const c = rec.c;
      if (rec.s !== 'RUNNING' || !c || c.id !== req.claimId || !r.claimLive || r.claimValue !== c.id)
        throw new ClaimConflictError(
          `claim ${req.claimId} on ${req.runId}/${req.node} is not the node's live claim (node ${rec.s}${c?.id === req.claimId && !r.claimLive ? ', orphaned' : ''}${r.run?.rec.cancelled ? ', run cancelled' : ''})`,
          req.runId,
          req.node,
        );
      const streamed = rec.o ?? { n: 0, l: 0 };
      if (req.seq < streamed.n) return;
      if (req.seq > streamed.n) throw seqGapError(req, streamed.n);
      const delta = boundedAppend(streamed.l, req.chunk);
      const next: NodeRecord = { ...rec, o: { n: streamed.n + 1, l: streamed.l + delta.byteLength } };
      const claimKey = keys.claim(rec.spec.runtime, req.runId, req.node);
      const ops = [put(keys.node(req.runId, req.node), encodeState(next))];
      if (delta.byteLength > 0)
        ops.push(put(keys.outputChunk(req.runId, req.node, rec.a + 1, streamed.n), Buffer.from(delta)));
      const res = await store.txn({
        compare: [
          modIs(keys.node(req.runId, req.node), rev),
          valueIs(claimKey, Buffer.from(c.id)),
          leaseIs(claimKey, c.lease),
        ],
        success: ops,
      });
      if (res.succeeded) {
        ctx.seen.setNode(req.runId, next, res.header.revision);
        return;
      }
    }
    throw keptLosingRaces(`output of ${req.runId}/${req.node}`, store.maxRaceRounds);
  });
}

/** The output the running attempt of `rec` streamed so far, read at `revision` when given. */
export async function readStreamed(
  ctx: EtcdContext,
  runId: string,
  rec: NodeRecord,
  revision?: string,
): Promise<Uint8Array> {
  if (!rec.o || rec.o.l === 0) return new Uint8Array();
  const res = await ctx.store.txn({
    success: [getPrefix(ctx.keys.outputs(runId, rec.spec.name, rec.a + 1), revision ? { revision } : {})],
  });
  return concatBytes(res.responses[0]!.response_range.kvs.map((kv) => kv.value));
}

/** Deletes the running attempt's chunks once its output is recorded (in the recording transaction). */
export const dropStreamed = (ctx: EtcdContext, runId: string, rec: NodeRecord) =>
  rec.o ? [delPrefix(ctx.keys.outputs(runId, rec.spec.name))] : [];

/** Chunks of a run by node, as loadRun reads them (l/<run>/): the running attempts' output so far. */
export function groupStreamed(
  ctx: EtcdContext,
  runId: string,
  kvs: { key: Buffer; value: Buffer }[],
): Map<string, { attempt: number; output: Uint8Array }> {
  const prefix = ctx.keys.outputs(runId).length;
  const parts = new Map<string, { attempt: number; chunks: Uint8Array[] }>();
  for (const kv of kvs) {
    const [node, attempt] = kv.key.subarray(prefix).toString().split('/');
    const name = decodeURIComponent(node!);
    const n = Number(attempt);
    const entry = parts.get(name);
    if (!entry || entry.attempt !== n) parts.set(name, { attempt: n, chunks: [kv.value] });
    else entry.chunks.push(kv.value);
  }
  return new Map(
    [...parts].map(([name, p]) => [name, { attempt: p.attempt, output: concatBytes(p.chunks) }]),
  );
}
