import type { Db } from './db.js';
import { type AttemptRow, NODE_COLUMNS, type NodeRow } from './rows.js';

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

interface Waiting {
  call: ClaimCall;
  /** The claimed node, or undefined: not claimable by this call (the caller finds out why). */
  resolve: (row: ClaimRow | undefined) => void;
  reject: (e: unknown) => void;
}

const MAX_BATCH = 64;
/** Batches in flight at once: one, so that claims arriving meanwhile fill the next batch (see finishes.ts). */
const MAX_IN_FLIGHT = 1;

/**
 * Rule 2 (and rule 3's recovery) for this process's concurrent claims as one
 * call of claim_nodes (migration 3, a prepared statement): a busy agent process claims in every free slot at once, and one
 * round trip (one write, one server wake-up, one commit) for several of them
 * costs the client and the server far less than one each. Each call still
 * gets exactly its own answer, and the statement cannot double-claim: a row
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
  private queue: Waiting[] = [];
  private inFlight = 0;

  constructor(private readonly db: Db) {}

  submit(call: ClaimCall): Promise<ClaimRow | undefined> {
    return new Promise((resolve, reject) => {
      this.queue.push({ call, resolve, reject });
      this.drain();
    });
  }

  private drain(): void {
    while (this.inFlight < MAX_IN_FLIGHT && this.queue.length > 0) {
      const batch: Waiting[] = [];
      const later: Waiting[] = [];
      const keys = new Set<string>();
      for (const w of this.queue) {
        const key = `${w.call.runId}\u0000${w.call.node}`;
        if (batch.length >= MAX_BATCH || keys.has(key)) later.push(w);
        else {
          keys.add(key);
          batch.push(w);
        }
      }
      this.queue = later;
      this.inFlight++;
      void this.send(batch).finally(() => {
        this.inFlight--;
        this.drain();
      });
    }
  }

  private async send(batch: Waiting[]): Promise<void> {
    const calls = batch.map((w) => w.call);
    try {
      const rows = await this.db.retrying('claim', async (attempt) => {
        const { rows } = await this.db.query<ClaimRow & { i: string }>(
          'claim',
          'SELECT * FROM claim_nodes($1, $2, $3, $4, $5, $6, $7, $8)',
          [
            calls.map((c) => c.runId),
            calls.map((c) => c.node),
            calls.map((c) => c.claimId),
            calls.map((c) => c.agentId),
            calls.map((c) => c.metadata),
            calls.map((c) => c.leaseId),
            calls.map((c) => c.now),
            attempt > 1,
          ],
          // See Db.fast: a lost claim only means the node runs again.
          { asyncCommit: true, repeatOnDeadlock: true, prepare: 'adagio_claim_nodes' },
        );
        return rows;
      });
      const byIndex = new Map(rows.map((r) => [Number(r.i), r]));
      for (const [i, w] of batch.entries()) w.resolve(byIndex.get(i + 1));
    } catch (e) {
      for (const w of batch) w.reject(e);
    }
  }
}
