import type { Logger } from '../../log.js';
import type { Clock, IdSource, NodeSpec } from '../../model/index.js';
import type { Keys } from './keys.js';
import type { NodeRecord, RunRecord } from './records.js';
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
  seen: SeenState;
}

/** The immutable part of a node (N/<run>/<node>): written once at start. */
export interface NodeTopology {
  i: number;
  spec: NodeSpec;
  runtime: string;
  up: string[];
  down: string[];
}

/** A map that forgets its oldest eighth when full (insertion order approximates age). */
export class BoundedMap<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly max = 100_000) {}

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  set(key: string, value: V): void {
    if (!this.map.has(key) && this.map.size >= this.max) {
      let n = this.max >> 3;
      for (const k of this.map.keys()) {
        this.map.delete(k);
        if (--n <= 0) break;
      }
    }
    this.map.set(key, value);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }
}

const nodeKey = (run: string, node: string) => `${run}\u0000${node}`;

/** Open nodes remembered per run as seal witnesses: more than a finish batch holds (32), so one not in the batch is known. */
const WITNESSES_PER_RUN = 64;

/** A bounded cache of node topology, so a transition can read its dependents in the same round trip as itself. */
export class TopologyCache {
  private readonly map: BoundedMap<NodeTopology>;
  constructor(max = 100_000) {
    this.map = new BoundedMap(max);
  }

  get(run: string, node: string): NodeTopology | undefined {
    return this.map.get(nodeKey(run, node));
  }

  set(run: string, node: string, t: NodeTopology): void {
    const k = nodeKey(run, node);
    if (!this.map.has(k)) this.map.set(k, t);
  }
}

export interface Versioned<T> {
  rec: T;
  /** The key's mod revision when it held `rec`. */
  rev: string;
}

/**
 * What this process last wrote or read of the mutable keys, with their
 * revisions. A transition's first try compares against these instead of
 * reading first: one round trip instead of two whenever nobody else changed
 * the keys meanwhile, the common case. A stale entry costs a failed compare
 * and a fresh read, never a wrong transition; and only a "go ahead" is ever
 * decided on an entry (anything else is decided on a fresh read).
 */
export class SeenState {
  private readonly nodes: BoundedMap<Versioned<NodeRecord>>;
  private readonly runs: BoundedMap<Versioned<RunRecord>>;
  /**
   * A few nodes per run last seen open (not COMPLETED): witnesses a finish
   * reads in its own transaction to learn, at no cost in the run's size,
   * that its run cannot be sealed yet (seal.ts).
   */
  private readonly open: BoundedMap<Set<string>>;
  /** Counter shards (start.ts): value and revision. */
  readonly counters = new Map<number, { value: number; rev: string }>();

  constructor(max = 100_000) {
    this.nodes = new BoundedMap(max);
    this.runs = new BoundedMap(max >> 3);
    this.open = new BoundedMap(max >> 3);
  }

  node(run: string, node: string): Versioned<NodeRecord> | undefined {
    return this.nodes.get(nodeKey(run, node));
  }

  run(run: string): Versioned<RunRecord> | undefined {
    return this.runs.get(run);
  }

  setNode(run: string, rec: NodeRecord, rev: string): void {
    this.nodes.set(nodeKey(run, rec.spec.name), { rec, rev });
    if (rec.s === 'COMPLETED') this.notOpen(run, rec.spec.name);
    else this.mayBeOpen(run, rec.spec.name);
  }

  /** A node just seen open (e.g. READY, about to be claimed): a witness while there is room. */
  mayBeOpen(run: string, node: string): void {
    const open = this.open.get(run) ?? new Set<string>();
    if (open.size === 0) this.open.set(run, open);
    if (open.size < WITNESSES_PER_RUN) open.add(node);
  }

  /** A node of the run last seen open, other than those in `busy`; undefined when none is known. */
  openNode(run: string, busy: ReadonlySet<string>): string | undefined {
    for (const name of this.open.get(run) ?? []) if (!busy.has(name)) return name;
    return undefined;
  }

  notOpen(run: string, node: string): void {
    this.open.get(run)?.delete(node);
  }

  setRun(rec: RunRecord, rev: string): void {
    this.runs.set(rec.id, { rec, rev });
  }
}
