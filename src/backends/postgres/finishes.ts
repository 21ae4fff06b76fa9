import type { Db } from './db.js';
import type { Notice } from './notices.js';

/** What finish_attempt (migration 2) answers for one call. */
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
}

interface Waiting {
  call: FinishCall;
  resolve: (r: FinishResult) => void;
  reject: (e: unknown) => void;
}

const MAX_BATCH = 64;
/**
 * Batches in flight at once. One: finishes arriving meanwhile fill the next
 * batch. Measured (npm run bench -- postgres): with more, batches shrink and
 * the statements, not the WAL flushes, become the server's bottleneck.
 */
const MAX_IN_FLIGHT = 1;

/**
 * Finishes are durable (synchronous commit: an accepted result must survive a
 * crash), so each costs a WAL flush, and finishes within a run serialise on
 * the run's row until that flush is done. This process's concurrent finishes
 * therefore go together: while batches are in flight, new calls queue and
 * then run as one statement in one transaction, sharing one round trip and
 * one flush. Each call still gets its own answer; a batch changes nothing
 * about what any single finish does. Calls are ordered by run id so that
 * batches in different processes take run locks in the same order and
 * cannot deadlock one another.
 */
export class FinishBatcher {
  private queue: Waiting[] = [];
  private inFlight = 0;

  constructor(private readonly db: Db) {}

  submit(call: FinishCall): Promise<FinishResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ call, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.drain();
      });
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    batch.sort((a, b) => (a.call.runId < b.call.runId ? -1 : a.call.runId > b.call.runId ? 1 : 0));
    const calls = batch.map((w) => w.call);
    try {
      const results = await this.db.retrying('finish', async (attempt) => {
        const { rows } = await this.db.query<{ r: FinishResult }>(
          'finish',
          `SELECT finish_attempt(x.run, x.node, x.claim, x.conclusion, x.metadata::jsonb, x.output, x.now, $8) AS r
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::bigint[])
             WITH ORDINALITY AS x(run, node, claim, conclusion, metadata, output, now, i)
           ORDER BY x.i`,
          [
            calls.map((c) => c.runId),
            calls.map((c) => c.node),
            calls.map((c) => c.claimId),
            calls.map((c) => c.conclusion),
            calls.map((c) => c.metadata),
            calls.map((c) => c.output),
            calls.map((c) => c.now),
            // A repeated try may find attempts already stored: the earlier try committed but its reply was lost.
            attempt > 1,
          ],
          { repeatOnDeadlock: true, prepare: 'adagio_finish' },
        );
        return rows.map((row) => row.r);
      });
      for (const [i, w] of batch.entries()) w.resolve(results[i]!);
    } catch (e) {
      for (const w of batch) w.reject(e);
    }
  }
}
