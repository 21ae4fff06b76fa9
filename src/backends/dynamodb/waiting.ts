import { type Db, type Item, type Key, mk, N, S } from './db.js';
import { decodeNode, keyItem, type NodeData, type NodeItem, nodeKey, runPk, waitingKey } from './items.js';

/**
 * A run's WAITING nodes, written only when first judged.
 *
 * A start writes each READY root as its own item, and the WAITING nodes of a
 * small run (their items together under WAITING_ITEM_BYTES, limits.ts) as
 * one `w#` item in the header's transaction: each node's data as the start
 * planned it, never changed afterwards. A WAITING node has no item of its
 * own until a transition first writes it (a finish judging it, a cascade, a
 * cancel, a retry). Until then every reader sees it as the start planned it,
 * at version 0, and a write at version 0 is conditioned on the node's item
 * being absent (`Tx.putNode`): the compare of rule 4 holds for it as
 * for any written item, since versions only grow from there. A larger run's
 * WAITING nodes are written as items before its header, as before: readers
 * find them and never look for `w#`.
 *
 * Why: a node written at the start and again when judged is two item writes
 * where one does; DynamoDB (and DynamoDB Local's single writer thread) pays
 * per item written: for the 7-node DAG, 5 of a run's ~37 item writes.
 *
 * The `w#` item never changes, so a process keeps the ones it wrote or read
 * (bounded): a transition judging a dependent this process does not
 * remember (written-nodes.ts) reads `w#` at most once per run.
 */
export class WaitingNodes {
  /** Run id → node name → the node's data as JSON, for runs whose `w#` this process wrote or read. */
  private readonly runs = new Map<string, Map<string, string>>();
  private bytes = 0;

  constructor(
    private readonly maxRuns = 10_000,
    private readonly maxBytes = 32 * 1024 * 1024,
  ) {}

  /**
   * The `w#` item of a start's WAITING nodes, from each node's data as
   * already encoded for its own item (name → JSON, not encoded again); kept
   * once its start commits (`written`).
   */
  static encode(runId: string, nodes: Map<string, string>): Item {
    return { ...keyItem(waitingKey(runId)), d: S(`[${[...nodes.values()].join(',')}]`) };
  }

  /**
   * Adds to `read` the WAITING nodes among `keys` that have no item yet: the
   * node items `read` lacks are looked up in their runs' `w#` items
   * (remembered, or read in one round trip). Keys that name no node stay
   * absent, so callers answer "not found" as before.
   */
  async fill(db: Db, read: Map<string, Item>, keys: Key[]): Promise<Map<string, Item>> {
    const missing = keys.filter((k) => k.sk.startsWith('n#') && !read.has(mk(k)));
    if (missing.length === 0) return read;
    const unknown = [...new Set(missing.map((k) => k.pk))].filter((pk) => !this.runs.has(pk.slice(4)));
    if (unknown.length > 0) {
      const got = await db.getMany(unknown.map((pk) => waitingKey(pk.slice(4))));
      for (const item of got.values()) this.remember(item.pk!.S!.slice(4), item);
    }
    for (const k of missing) {
      const item = this.synthesize(k.pk.slice(4), k.sk.slice(2));
      if (item) read.set(mk(k), item);
    }
    return read;
  }

  /** Node items (consistent reads), with the WAITING nodes not yet written as the start planned them. */
  async read(db: Db, keys: Key[]): Promise<Map<string, Item>> {
    return this.fill(db, await db.getMany(keys), keys);
  }

  /** Every node of a run, in index order: its node items and the WAITING nodes not yet written. */
  async runNodes(db: Db, runId: string): Promise<NodeItem[]> {
    const [items, waiting] = await Promise.all([
      db.partition(runPk(runId), 'n#'),
      this.runs.has(runId) ? undefined : db.get(waitingKey(runId)),
    ]);
    if (waiting) this.remember(runId, waiting);
    return this.complete(runId, items)
      .map(decodeNode)
      .sort((a, b) => a.d.i - b.d.i);
  }

  /**
   * A run's items as one Query read them (its whole partition, `w#` among
   * them when it has one), with a node item added for each WAITING node not
   * yet written.
   */
  complete(runId: string, items: Item[]): Item[] {
    const waiting = items.find((i) => i.sk!.S === waitingKey(runId).sk);
    if (waiting) this.remember(runId, waiting);
    const names = this.runs.get(runId);
    if (!names) return items;
    const written = new Set(items.filter((i) => i.sk!.S!.startsWith('n#')).map((i) => i.sk!.S!.slice(2)));
    const out = [...items];
    for (const name of names.keys()) if (!written.has(name)) out.push(this.synthesize(runId, name)!);
    return out;
  }

  /** The node item a WAITING node not yet written stands for: version 0, its data as planned. */
  private synthesize(runId: string, name: string): Item | undefined {
    const json = this.runs.get(runId)?.get(name);
    if (json === undefined) return undefined;
    return { ...keyItem(nodeKey(runId, name)), v: N(0), d: S(json) };
  }

  /** A run's `w#` item as read. */
  remember(runId: string, item: Item): void {
    if (this.runs.has(runId)) return;
    const json = item.d!.S!;
    if (json.length > this.maxBytes / 16) return;
    const names = new Map<string, string>();
    for (const d of JSON.parse(json) as NodeData[]) names.set(d.spec.name, JSON.stringify(d));
    this.keep(runId, names, json.length);
  }

  /** A run's WAITING nodes as its start wrote them into `w#` (name → JSON, as `encode` took them). */
  written(runId: string, nodes: Map<string, string>): void {
    let bytes = 0;
    for (const j of nodes.values()) bytes += j.length;
    if (!this.runs.has(runId) && bytes <= this.maxBytes / 16) this.keep(runId, nodes, bytes);
  }

  private keep(runId: string, names: Map<string, string>, bytes: number): void {
    while (this.runs.size >= this.maxRuns || (this.runs.size > 0 && this.bytes + bytes > this.maxBytes)) {
      const [oldest, gone] = this.runs.entries().next().value!;
      this.runs.delete(oldest);
      for (const j of gone.values()) this.bytes -= j.length;
    }
    this.runs.set(runId, names);
    for (const j of names.values()) this.bytes += j.length;
  }
}
