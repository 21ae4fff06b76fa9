import { boundedAppend, checkNodeName, checkRunId } from '../../model/index.js';
import { type AppendOutputRequest, checkSeq, claimNotLive, seqGapError } from '../../protocol/index.js';
import type { DynamoContext, LocalEvent } from './context.js';
import { encodeNode, encodeOutput, headerKey, next, nodeKey, runAndNode } from './items.js';
import { OUTPUT_PART_BYTES } from './limits.js';

/**
 * Rule 10: a chunk of the running attempt's output, fenced by the claim like
 * a finish: one transaction writes its parts (they are the attempt's output
 * from then on, however the attempt ends) and the node's next seq and
 * streamed length, conditioned on the node's version.
 */
export async function appendOutput(ctx: DynamoContext, req: AppendOutputRequest): Promise<void> {
  checkSeq(req.seq);
  checkRunId(req.runId);
  checkNodeName(req.node);
  for (;;) {
    const read = await ctx.waiting.read(ctx.db, [nodeKey(req.runId, req.node), headerKey(req.runId)]);
    const { header, node } = runAndNode(read, req.runId, req.node);
    const cancelled = header.d.cancelled;
    const c = node.d.claim;
    if (node.d.status !== 'RUNNING' || c?.id !== req.claimId || c.orphaned || cancelled)
      throw claimNotLive(req, {
        status: node.d.status,
        orphaned: c?.id === req.claimId && c.orphaned,
        cancelled,
      });
    if (req.seq < node.d.seq) return;
    if (req.seq > node.d.seq) throw seqGapError(req, node.d.seq);
    const delta = boundedAppend(node.d.live, req.chunk);
    const tx = ctx.db.tx();
    const written = encodeNode(
      next(node, { ...node.d, seq: node.d.seq + 1, live: node.d.live + delta.byteLength }),
    );
    tx.putNode(written, node.v);
    for (const part of encodeOutput(
      req.runId,
      node.d.i,
      node.d.attempts + 1,
      req.seq,
      delta,
      OUTPUT_PART_BYTES,
    ))
      tx.put(part, 'any');
    if (!(await ctx.db.commit(tx))) continue;
    // The claim's finish starts from this version.
    ctx.nodes.put(written);
    if (delta.byteLength > 0)
      ctx.bus.emit('local', {
        kind: 'output',
        runId: req.runId,
        node: req.node,
        attempt: node.d.attempts + 1,
        offset: node.d.live,
        chunk: delta,
      } satisfies LocalEvent);
    ctx.bus.emit('run', req.runId);
    return;
  }
}
