import { Batcher } from '../batcher.js';
import { type Db, isConnectionError } from './db.js';
import type { Notice } from './notices.js';
import { FINISH_ATTEMPTS } from './sql.js';

/** What finish_started (migration 13, around finish_attempt of migration 2) answers for one call. */
export type FinishResult =
  | { notice: Notice }
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
 * therefore go together (see Batcher) as one statement in one transaction,
 * sharing one round trip and one flush; a batch changes nothing about what
 * any single finish does. Calls are ordered by run id so that
 * batches in different processes take run locks in the same order and
 * cannot deadlock one another.
 */
export class FinishBatcher {
  private readonly batcher: Batcher<FinishCall, FinishResult>;

  constructor(private readonly db: Db) {
    this.batcher = new Batcher({ maxCalls: 64, isolate: (e) => !isConnectionError(e) }, (calls) =>
      this.send(calls),
    );
  }

  submit(call: FinishCall): Promise<FinishResult> {
    return this.batcher.submit(call);
  }

  private async send(calls: FinishCall[]): Promise<FinishResult[]> {
    const order = calls.map((_, i) => i).sort((a, b) => compare(calls[a]!.runId, calls[b]!.runId));
    const sorted = order.map((i) => calls[i]!);
    const results = await this.db.retrying('finish', async (attempt) => {
      const { rows } = await this.db.query<{ r: FinishResult }>(
        'finish',
        FINISH_ATTEMPTS,
        [
          sorted.map((c) => c.runId),
          sorted.map((c) => c.node),
          sorted.map((c) => c.claimId),
          sorted.map((c) => c.conclusion),
          sorted.map((c) => c.metadata),
          sorted.map((c) => c.output),
          sorted.map((c) => c.now),
          // A repeated try may find attempts already stored: the earlier try committed but its reply was lost.
          attempt > 1,
          sorted.map((c) => c.startedAt),
        ],
        { repeatOnDeadlock: true, prepare: 'adagio_finish' },
      );
      return rows.map((row) => row.r);
    });
    const answers: FinishResult[] = new Array(calls.length);
    for (const [k, i] of order.entries()) answers[i] = results[k]!;
    return answers;
  }
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
