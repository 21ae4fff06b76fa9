import { Batcher } from '../batcher.js';
import { pgArray } from './arrays.js';
import { type Db, isConnectionError, MAX_BATCH_CALLS } from './db.js';
import type { AttemptRow, NodeRow } from './rows.js';
import { CLAIM_NODES } from './sql.js';

/** One claim as the batch statement takes it. */
export interface ClaimCall {
  runId: string;
  node: string;
  /** Chosen before the first try, so a repeated try can recognise its own committed claim. */
  claimId: string;
  agentId: string;
  /** JSON text. */
  metadata: string;
  leaseId: string;
  now: number;
}

/** An attempt row as json_build_object renders it in the claim statement (bytea as base64). */
export interface AttemptJson extends Omit<AttemptRow, 'output' | 'started_at' | 'finished_at'> {
  output: string;
  started_at: number | null;
  finished_at: number;
}

export type ClaimRow = NodeRow & { attempts_json: AttemptJson[] };

/**
 * Rule 2 (and rule 3's recovery) for this process's concurrent claims as one
 * call of claim_nodes (migration 3, a prepared statement), batched (see
 * Batcher): a busy agent process claims in every free slot at once. The
 * statement cannot double-claim: a row
 * only matches while READY (or RUNNING and orphaned) under a live lease, and
 * concurrent claimers queue on its row lock and re-check, so one matches.
 * Rows are locked in (run, node) order, so batches in different processes
 * cannot deadlock one another; two calls for the same node never share a
 * batch (the later one waits for the next).
 *
 * A repeated try (the reply of an earlier one was lost) also matches a node
 * still RUNNING under the call's own claim id, leaving its claim as it was:
 * the earlier try committed and the claim is the caller's.
 */
export class ClaimBatcher {
  private readonly batcher: Batcher<ClaimCall, ClaimRow | undefined>;

  constructor(private readonly db: Db) {
    this.batcher = new Batcher(
      {
        maxCalls: MAX_BATCH_CALLS,
        key: (c) => `${c.runId}\u0000${c.node}`,
        isolate: (e) => !isConnectionError(e),
      },
      (calls) => this.send(calls),
    );
  }

  /** The claimed node, or undefined: not claimable by this call (the caller finds out why). */
  submit(call: ClaimCall): Promise<ClaimRow | undefined> {
    return this.batcher.submit(call);
  }

  private async send(calls: ClaimCall[]): Promise<(ClaimRow | undefined)[]> {
    const rows = await this.db.retrying('claim', async (attempt) => {
      const { rows } = await this.db.query<ClaimRow & { i: string }>(
        'claim',
        CLAIM_NODES,
        [
          pgArray(calls.map((c) => c.runId)),
          pgArray(calls.map((c) => c.node)),
          pgArray(calls.map((c) => c.claimId)),
          pgArray(calls.map((c) => c.agentId)),
          pgArray(calls.map((c) => c.metadata)),
          pgArray(calls.map((c) => c.leaseId)),
          pgArray(calls.map((c) => c.now)),
          attempt > 1,
        ],
        // See Db.fast: a lost claim only means the node runs again.
        { asyncCommit: true, repeatOnDeadlock: true, prepare: 'adagio_claim_nodes' },
      );
      return rows;
    });
    const byIndex = new Map(rows.map((r) => [Number(r.i), r]));
    return calls.map((_, i) => byIndex.get(i + 1));
  }
}
