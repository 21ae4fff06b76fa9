import { Batcher } from '../batcher.js';
import { pgArray } from './arrays.js';
import { type Db, isConnectionError } from './db.js';
import { COUNTER_SHARDS } from './migrations.js';
import { START_RUNS } from './sql.js';

/** One run to store, as the batch statement takes it. */
export interface StartCall {
  id: string;
  createdAt: number;
  /** JSON text of the run's edges. */
  edges: string;
  nodeCount: number;
  /** JSON text of an array of node rows, each naming its run_id. */
  nodes: string;
  /** When the run's deadline passes (rule 13), ms; null without one. */
  deadlineAt: number | null;
  /** JSON text of the run's identity (RunIdentity; rule 17). */
  identity: string;
}

/** Nodes written by one statement, at most (a single larger run still goes in one). */
const MAX_NODES_PER_BATCH = 2_000;

/**
 * Rule 1 for this process's concurrent starts (an API process under load) as
 * one statement (see Batcher): each run, its nodes and the counters, all or
 * nothing per batch. A run that cannot be written fails its whole batch, but
 * runs reach here validated, so what fails a batch is the store itself.
 * ON CONFLICT: a retry after a lost reply finds its own runs already stored,
 * and a start whose request id is taken stores nothing (its caller then looks
 * the request id up: RUN_BY_REQUEST).
 */
export class StartBatcher {
  private readonly batcher: Batcher<StartCall, undefined>;

  constructor(private readonly db: Db) {
    this.batcher = new Batcher(
      {
        maxCalls: 64,
        maxWeight: MAX_NODES_PER_BATCH,
        weight: (c) => c.nodeCount,
        isolate: (e) => !isConnectionError(e),
      },
      (calls) => this.send(calls),
    );
  }

  async submit(call: StartCall): Promise<void> {
    await this.batcher.submit(call);
  }

  private async send(calls: StartCall[]): Promise<undefined[]> {
    const nodes = calls.map((c) => c.nodes.slice(1, -1)).filter((n) => n.length > 0);
    await this.db.retrying('start', () =>
      this.db.query(
        'start',
        START_RUNS,
        [
          pgArray(calls.map((c) => c.id)),
          pgArray(calls.map((c) => c.createdAt)),
          pgArray(calls.map((c) => c.edges)),
          pgArray(calls.map((c) => c.nodeCount)),
          `[${nodes.join(',')}]`,
          Math.floor(Math.random() * COUNTER_SHARDS),
          pgArray(calls.map((c) => c.identity)),
          pgArray(calls.map((c) => c.deadlineAt)),
        ],
        { prepare: 'adagio_start' },
      ),
    );
    return calls.map(() => undefined);
  }
}
