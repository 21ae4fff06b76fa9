import type { Logger } from '../../log.js';
import type { Clock, IdSource, NodeSpec } from '../../model/index.js';
import type { Keys } from './keys.js';
import type { Store } from './store.js';

/** What every etcd operation needs. */
export interface EtcdContext {
  store: Store;
  keys: Keys;
  clock: Clock;
  ids: IdSource;
  logger: Logger;
  /** Static node facts (runtime, neighbours) by run and node: immutable once started, so safe to cache. */
  topology: TopologyCache;
}

/** The immutable part of a node (N/<run>/<node>): written once at start. */
export interface NodeTopology {
  i: number;
  spec: NodeSpec;
  runtime: string;
  up: string[];
  down: string[];
}

/** A bounded cache of node topology, so a transition can read its dependents in the same round trip as itself. */
export class TopologyCache {
  private readonly map = new Map<string, NodeTopology>();
  constructor(private readonly max = 100_000) {}

  get(run: string, node: string): NodeTopology | undefined {
    return this.map.get(`${run}\u0000${node}`);
  }

  set(run: string, node: string, t: NodeTopology): void {
    const k = `${run}\u0000${node}`;
    if (this.map.has(k)) return;
    if (this.map.size >= this.max) {
      // Drop the oldest eighth: insertion order approximates age.
      let n = this.max >> 3;
      for (const key of this.map.keys()) {
        this.map.delete(key);
        if (--n <= 0) break;
      }
    }
    this.map.set(k, t);
  }
}
