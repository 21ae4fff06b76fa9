import { type Item, itemBytes, type Key, mk } from './db.js';
import { decodeNode, type NodeData } from './items.js';

/**
 * What is remembered at most, by count and by size: a process that makes
 * many nodes READY for others to claim must not grow without bound (node
 * items run from under 1 KB to hundreds with large metadata).
 */
const MAX_NODES = 10_000;
const MAX_BYTES = 16 * 1024 * 1024;

/**
 * Node items this process committed, remembered for a while so that the
 * next transition of the same node in this process can start from what it
 * wrote instead of reading it: a claim of a node this process made READY, a
 * finish of a node it claimed, a finish judging a WAITING dependent this
 * process's start or another of its finishes wrote. Whoever takes an item
 * from here still compares its version at commit: if any process changed
 * the node meanwhile the transaction is refused, and the transition reads
 * afresh. An item from here never leads to an answer, only to a commit or
 * (written since elsewhere) a refused one: each taker checks the item shows
 * exactly what it needs to go ahead (READY, claimable; RUNNING under the
 * finishing claim; WAITING) and reads otherwise. Versions only grow, so a
 * stale item never passes a commit's compare.
 */
export class WrittenNodes {
  private readonly items = new Map<string, { item: Item; at: number; bytes: number }>();
  private bytes = 0;

  /** A node item as committed (its version included); never over a later version of it put already. */
  put(item: Item): void {
    const key = `${item.pk!.S}\u0000${item.sk!.S}`;
    const had = this.items.get(key);
    if (had && Number(had.item.v!.N) > Number(item.v!.N)) return;
    this.drop(key);
    const bytes = itemBytes(item);
    if (bytes > MAX_BYTES / 16) return;
    while (this.items.size >= MAX_NODES || this.bytes + bytes > MAX_BYTES)
      this.drop(this.items.keys().next().value!);
    this.items.set(key, { item, at: performance.now(), bytes });
    this.bytes += bytes;
  }

  /** Forgets a node: a commit found it changed since (by another process). */
  forget(key: Key): void {
    this.drop(mk(key));
  }

  private drop(key: string): void {
    const e = this.items.get(key);
    if (!e) return;
    this.items.delete(key);
    this.bytes -= e.bytes;
  }

  /** The node as this process last wrote it, if it shows what `ok` needs and was written within `maxAgeMs`. */
  take(key: Key, ok: (d: NodeData) => boolean, maxAgeMs = Number.POSITIVE_INFINITY): Item | undefined {
    const e = this.items.get(mk(key));
    if (!e || performance.now() - e.at > maxAgeMs) return undefined;
    return ok(decodeNode(e.item).d) ? e.item : undefined;
  }
}
