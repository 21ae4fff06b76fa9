import type pg from 'pg';
import { boundedAppend } from '../../model/index.js';
import {
  type AppendOutputRequest,
  ClaimConflictError,
  checkSeq,
  NotFoundError,
  seqGapError,
} from '../../protocol/index.js';
import { bytes, toBuffer } from './rows.js';
import type { TransitionContext } from './transitions.js';

/**
 * Live output (Repository.appendOutput) on PostgreSQL: the live_outputs table
 * of migration 4. An append locks the node row, so it is ordered with finish,
 * cancel and the reaper (which lock it too), and checks the claim and the
 * chunk's seq under that lock before adding the bytes.
 */
export async function appendOutput(ctx: TransitionContext, req: AppendOutputRequest): Promise<void> {
  checkSeq(req.seq);
  const appended = await ctx.db.retrying('append output', () =>
    ctx.db.tx('append output', async (c) => {
      const node = (
        await c.query<{
          status: string;
          claim_id: string | null;
          orphaned: boolean;
          attempt_count: number;
          next_seq: number | null;
          length: number | null;
          attempt: number | null;
        }>(
          `SELECT n.status, n.claim_id, n.orphaned, n.attempt_count, lo.next_seq, length(lo.output) AS length, lo.attempt
           FROM nodes n LEFT JOIN live_outputs lo ON lo.run_id = n.run_id AND lo.node = n.name
           WHERE n.run_id = $1 AND n.name = $2 FOR UPDATE OF n`,
          [req.runId, req.node],
        )
      ).rows[0];
      if (!node) {
        const run = await c.query('SELECT 1 FROM runs WHERE id = $1', [req.runId]);
        throw run.rowCount
          ? new NotFoundError('node', `${req.runId}/${req.node}`)
          : new NotFoundError('run', req.runId);
      }
      if (node.status !== 'RUNNING' || node.claim_id !== req.claimId || node.orphaned)
        throw new ClaimConflictError(
          `claim ${req.claimId} on ${req.runId}/${req.node} is not the node's live claim (node ${node.status}${node.orphaned ? ', orphaned' : ''})`,
          req.runId,
          req.node,
        );
      const attempt = node.attempt_count + 1;
      // A row of an earlier attempt cannot outlive it (finish and cancel delete it); guard anyway.
      const current = node.attempt === attempt;
      const next = current ? node.next_seq! : 0;
      if (req.seq < next) return false;
      if (req.seq > next) throw seqGapError(req, next);
      const delta = boundedAppend(current ? node.length! : 0, req.chunk);
      await c.query(
        `INSERT INTO live_outputs (run_id, node, attempt, next_seq, output) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (run_id, node) DO UPDATE SET next_seq = EXCLUDED.next_seq, attempt = EXCLUDED.attempt,
           output = CASE WHEN live_outputs.attempt = EXCLUDED.attempt THEN live_outputs.output ELSE '' END
                    || EXCLUDED.output`,
        [req.runId, req.node, attempt, req.seq + 1, toBuffer(delta)],
      );
      return delta.byteLength > 0;
    }),
  );
  if (appended) ctx.publisher.post([{ r: req.runId, out: [req.node] }]);
}

export interface LiveOutput {
  attempt: number;
  output: Uint8Array;
}

/** The live output of a run's nodes (of the named ones when `names` is set). */
export async function readLiveOutputs(
  c: pg.ClientBase,
  runId: string,
  names?: string[],
): Promise<Map<string, LiveOutput>> {
  const { rows } = await c.query<{ node: string; attempt: number; output: Buffer }>(
    `SELECT node, attempt, output FROM live_outputs WHERE run_id = $1${names ? ' AND node = ANY($2)' : ''}`,
    names ? [runId, names] : [runId],
  );
  return new Map(rows.map((r) => [r.node, { attempt: r.attempt, output: bytes(r.output) }]));
}
