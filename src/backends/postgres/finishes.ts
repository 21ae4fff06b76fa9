import { Batcher } from '../batcher.js';
import { pgArray } from './arrays.js';
import { type Db, isConnectionError, MAX_BATCH_CALLS } from './db.js';
import type { Notice, Publisher } from './notices.js';
import { FINISH_NODES } from './sql.js';

/** What finish_nodes (migration 12) answers for one call. */
export type FinishResult =
  | { ok: true }
  | { recorded: true }
  | { missing: 'run' | 'node' }
  | { conflict: true; status: string; orphaned: boolean; cancelled: boolean };

export interface FinishCall {
  runId: string;
  node: string;
  claimId: string;
  conclusion: string;
  /** JSON text. */
  metadata: string;
  output: Buffer;
  now: number;
  /** The holder's reported start (rule 20), ms; null: none. */
  startedAt: number | null;
}

/**
 * Finishes are durable (synchronous commit: an accepted result must survive a
 * crash), so each costs a WAL flush, and finishes within a run serialise on
 * the run's row until that flush is done. This process's concurrent finishes
 * therefore go together (see Batcher) as one call of finish_nodes, a few
 * set-based statements in one transaction, sharing one round trip and one
 * flush; a batch changes nothing about what any single finish does. The
 * function locks the batch's runs, then its nodes, each in sorted order, so
 * batches in different processes cannot deadlock one another. Two calls for
 * the same node never share a batch (the later one would see the node as the
 * batch found it, not as the earlier call left it).
 *
 * The batch's notices (one per run it changed) are published once it has
 * committed, before any of its callers hears back: the wake-ups of a batch go
 * together, in this process's order.
 */
export class FinishBatcher {
  private readonly batcher: Batcher<FinishCall, FinishResult>;

  constructor(
    private readonly db: Db,
    private readonly publisher: Publisher,
  ) {
    this.batcher = new Batcher(
      {
        maxCalls: MAX_BATCH_CALLS,
        key: (c) => `${c.runId}\u0000${c.node}`,
        isolate: (e) => !isConnectionError(e),
      },
      (calls) => this.send(calls),
    );
  }

  submit(call: FinishCall): Promise<FinishResult> {
    return this.batcher.submit(call);
  }

  private async send(calls: FinishCall[]): Promise<FinishResult[]> {
    const rows = await this.db.retrying('finish', async (attempt) => {
      const { rows } = await this.db.query<{ i: number; r: FinishResult | Notice }>(
        'finish',
        FINISH_NODES,
        [
          pgArray(calls.map((c) => c.runId)),
          pgArray(calls.map((c) => c.node)),
          pgArray(calls.map((c) => c.claimId)),
          pgArray(calls.map((c) => c.conclusion)),
          pgArray(calls.map((c) => c.metadata)),
          pgArray(calls.map((c) => c.output)),
          pgArray(calls.map((c) => c.now)),
          pgArray(calls.map((c) => c.startedAt)),
          // A repeated try may find attempts already stored: the earlier try committed but its reply was lost.
          attempt > 1,
        ],
        { repeatOnDeadlock: true, prepare: 'adagio_finish_nodes' },
      );
      return rows;
    });
    const answers: FinishResult[] = new Array(calls.length);
    const notices: Notice[] = [];
    for (const row of rows) {
      if (row.i === 0) notices.push(row.r as Notice);
      else answers[row.i - 1] = row.r as FinishResult;
    }
    // Not awaited: the results are recorded; the wake-ups follow in this process's next NOTIFY batch.
    this.publisher.post(notices);
    return answers;
  }
}
