import { concatBytes, type NodeState } from '../../model/index.js';
import type { DynamoContext } from './context.js';
import { attemptsOf, attemptsPrefix, type NodeData, nodeState, outputPrefix, runPk } from './items.js';

/**
 * One node as the protocol shows it: its attempts and outputs (one Query of
 * its attempt prefix) and its inputs (one Query per input's attempt that
 * has output).
 * `upIndex` gives the upstream nodes' positions.
 */
export async function readNodeState(
  ctx: DynamoContext,
  runId: string,
  n: NodeData,
  upIndex: Map<string, number>,
  /** Inputs known empty (the upstream's attempt wrote no output): not read. */
  empty: ReadonlySet<string> = new Set(),
): Promise<NodeState> {
  // A node that never ran has no attempt items: no query.
  const items = n.attempts > 0 ? await ctx.db.partition(runPk(runId), attemptsPrefix(n.i)) : [];
  const { attempts, outputs } = attemptsOf(items, n.i);
  const inputs: Record<string, Uint8Array> = {};
  await Promise.all(
    Object.entries(n.inputs).map(async ([up, k]) => {
      const i = upIndex.get(up);
      if (i === undefined) return;
      if (empty.has(up)) {
        inputs[up] = new Uint8Array();
        return;
      }
      const parts = await ctx.db.partition(runPk(runId), outputPrefix(i, k));
      inputs[up] = concatBytes(parts.map((p) => p.b!.B!));
    }),
  );
  return nodeState(n, attempts, outputs, inputs);
}
