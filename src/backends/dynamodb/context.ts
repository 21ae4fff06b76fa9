import { EventEmitter } from 'node:events';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import type { Logger } from '../../log.js';
import type { Clock, IdSource, NodeStatus, RunConclusion, RunStatus } from '../../model/index.js';
import type { ClaimRecords } from './claim-records.js';
import { type Db, N, type Tx } from './db.js';
import { encodeNode, type NodeItem, STATS_PK } from './items.js';
import { STATS_SHARDS } from './limits.js';
import type { WaitingNodes } from './waiting.js';
import type { WrittenNodes } from './written-nodes.js';

/** What every DynamoDB operation needs. */
export interface DynamoContext {
  db: Db;
  clock: Clock;
  ids: IdSource;
  logger: Logger;
  /**
   * In-process wake-ups: `ready` (runtime) when this process made a node
   * READY or orphaned, `run` (run id) when it changed a run. Subscribers and
   * watchers of this process react at once; those of other processes poll.
   */
  bus: EventEmitter;
  /** Each node's dependents (immutable once started), so a finish reads them with the node in one round trip. */
  downstream: DownstreamCache;
  /** Rule 3's records of which claims each lease holds, and which of this process's are stale. */
  claimRecords: ClaimRecords;
  /** Node items this process committed lately, which its next transitions may start from. */
  nodes: WrittenNodes;
  /** Small runs' WAITING nodes not yet written: every read of node items goes through it. */
  waiting: WaitingNodes;
}

/** A bounded map of run/node → dependents' names; forgets its oldest eighth when full. */
export class DownstreamCache {
  private readonly map = new Map<string, string[]>();
  constructor(private readonly max = 100_000) {}

  get(runId: string, node: string): string[] | undefined {
    return this.map.get(`${runId}\u0000${node}`);
  }

  set(runId: string, node: string, down: string[]): void {
    if (this.map.size >= this.max) {
      let n = this.max >> 3;
      for (const k of this.map.keys()) {
        this.map.delete(k);
        if (--n <= 0) break;
      }
    }
    this.map.set(`${runId}\u0000${node}`, down);
  }
}

export function newBus(): EventEmitter {
  const bus = new EventEmitter();
  bus.setMaxListeners(0);
  return bus;
}

/** Counter changes of one transaction: runs and nodes per status. */
export class Delta {
  runs = 0;
  readonly nodes: Record<NodeStatus, number> = { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 };

  move(from: NodeStatus, to: NodeStatus): void {
    this.nodes[from]--;
    this.nodes[to]++;
  }

  /** Adds another transaction's changes (a batch adds its calls' changes to one shard). */
  merge(o: Delta): void {
    this.runs += o.runs;
    for (const k of Object.keys(this.nodes) as NodeStatus[]) this.nodes[k] += o.nodes[k];
  }

  /** Adds the changes to a random counter shard in the transaction (no condition: additions commute). */
  addTo(tx: Tx): void {
    const parts: string[] = [];
    const values: Record<string, AttributeValue> = {};
    const add = (name: string, n: number) => {
      if (n === 0) return;
      parts.push(`${name} :${name}`);
      values[`:${name}`] = N(n);
    };
    add('runs', this.runs);
    add('cW', this.nodes.WAITING);
    add('cR', this.nodes.READY);
    add('cU', this.nodes.RUNNING);
    add('cC', this.nodes.COMPLETED);
    if (parts.length === 0) return;
    tx.update(
      { pk: STATS_PK, sk: String(Math.floor(Math.random() * STATS_SHARDS)) },
      { UpdateExpression: `ADD ${parts.join(', ')}`, ExpressionAttributeValues: values },
    );
  }
}

/** A change this process committed, for its own watchers (`local` on the bus), in commit order. */
export type LocalEvent =
  | { kind: 'node'; runId: string; node: NodeItem; runStatus: RunStatus }
  | { kind: 'sealed'; runId: string; conclusion: RunConclusion }
  | { kind: 'output'; runId: string; node: string; attempt: number; offset: number; chunk: Uint8Array };

/**
 * A wake-up for this process's subscribers: `runtime` has something to
 * claim. With `node` (committed READY, or orphaned, at its version) a
 * subscriber delivers it at once without querying the index; without, it
 * queries the index.
 */
export interface ReadyEvent {
  runtime: string;
  node?: { runId: string; name: string; stamp: string };
}

export function emitReady(ctx: DynamoContext, n: NodeItem): void {
  // This process's claim of it may start from what was committed (written-nodes.ts).
  ctx.nodes.put(encodeNode(n));
  const ev = n.d.status === 'READY' && !n.d.readyAt ? 'R' : n.d.claim?.orphaned ? 'O' : undefined;
  ctx.bus.emit('ready', {
    runtime: n.d.spec.runtime,
    node: ev ? { runId: n.runId, name: n.d.spec.name, stamp: readyStamp(n.v, ev) } : undefined,
  } satisfies ReadyEvent);
}

/** What a subscriber delivered a ready-index entry at: its node's version and kind. */
export const readyStamp = (v: number | string, ev: string) => `${v}${ev}`;

export function emitNode(ctx: DynamoContext, node: NodeItem, runStatus: RunStatus): void {
  ctx.bus.emit('local', { kind: 'node', runId: node.runId, node, runStatus } satisfies LocalEvent);
}
