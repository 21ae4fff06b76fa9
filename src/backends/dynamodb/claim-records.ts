import { encodeTime } from 'ulid';
import type { Clock } from '../../model/index.js';
import { type Db, type Item, type Key, mk, S, type Tx } from './db.js';
import { decodeNode, keyItem, leaseClaimsPk, nodeKey } from './items.js';

/**
 * Rule 3's record of the claims a lease holds, so that a lapse orphans
 * exactly them with consistent reads (an index on the nodes' lease would be
 * eventually consistent: a lapse could miss a claim committed just before).
 *
 * One record per claim transaction, not per claim: `lc#<lease>` / `<its
 * first claim id>`, listing each claim as `<claim id>#<run id>#<node>`. A
 * finish, release or cancel writes nothing here: an entry whose claim ended
 * is stale and harmless, since a lapse orphans an entry only while its node
 * still holds that very claim id (claim ids are never reused). So a claim
 * batch costs one item and its finishes none, where a record per claim put
 * one item at each claim and deleted it at each finish.
 *
 * Records are removed by whoever can tell they are all stale: the process
 * that wrote one, once each of its claims ended through this process
 * (finished, released, or refused as no longer live), writes its next
 * record of that lease over it (one put instead of a put and a delete), or
 * deletes it in the next sweep; a lapse or revoke deletes the lease's
 * records after orphaning; and every PRUNE_INTERVAL_MS a process prunes
 * records older than PRUNE_AGE_MS whose claims all ended elsewhere (an
 * agent whose finishes went through another API process), so a long-lived
 * lease's records do not grow without bound.
 *
 * A record written over keeps its key, so its contents carry their own mark
 * (`f`, the first claim id they list): a prune deletes only the contents it
 * read. A lapse needs no such care: a claim transaction checks its lease
 * live, so once a lapse has marked the lease no record of it changes.
 */
export interface ClaimEntry {
  claimId: string;
  runId: string;
  node: string;
}

/** How often a process looks for stale records of live leases, and how old a record must be to be looked at. */
const PRUNE_INTERVAL_MS = 30_000;
const PRUNE_AGE_MS = 60_000;

export function encodeEntry(e: ClaimEntry): string {
  return `${e.claimId}#${e.runId}#${e.node}`;
}

/** Claim and run ids are ULIDs (no `#`); the node's name is the rest. */
export function decodeEntry(s: string): ClaimEntry {
  const a = s.indexOf('#');
  const b = s.indexOf('#', a + 1);
  return { claimId: s.slice(0, a), runId: s.slice(a + 1, b), node: s.slice(b + 1) };
}

export function entriesOf(record: Item): ClaimEntry[] {
  // A record of one claim as tables written before batch records hold them: `<run id>#<node>`, its claim id in `claim`.
  if (record.claim?.S) {
    const sk = record.sk!.S!;
    const at = sk.indexOf('#');
    return [{ claimId: record.claim.S, runId: sk.slice(0, at), node: sk.slice(at + 1) }];
  }
  return (record.c?.SS ?? []).map(decodeEntry);
}

/** Whether a node item still holds the claim (RUNNING under that id). */
export function holds(node: Item | undefined, claimId: string): boolean {
  if (!node) return false;
  const d = decodeNode(node).d;
  return d.status === 'RUNNING' && d.claim?.id === claimId;
}

export class ClaimRecords {
  /** Claim id → its record while some claim of the record has not ended here. */
  private readonly open = new Map<string, { key: Key; left: number }>();
  /** Records all of whose claims ended here: deleted by the next flush. */
  private stale: Key[] = [];
  /** When the last prune ran, on the store's clock. */
  private lastPrune: number;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
  ) {
    this.lastPrune = clock.now();
  }

  /**
   * Adds to a claim transaction the record of its claims under one lease:
   * over a record of that lease whose claims all ended here, when there is
   * one (if the transaction is refused, that record is left to the prune).
   */
  add(tx: Tx, leaseId: string, entries: ClaimEntry[]): Key {
    const pk = leaseClaimsPk(leaseId);
    const at = this.stale.findIndex((k) => k.pk === pk);
    const key: Key = at >= 0 ? this.stale.splice(at, 1)[0]! : { pk, sk: entries[0]!.claimId };
    tx.put({ ...keyItem(key), c: { SS: entries.map(encodeEntry) }, f: S(entries[0]!.claimId) }, 'any');
    return key;
  }

  /** The record committed: its claims are followed until they end here. */
  track(key: Key, claimIds: string[]): void {
    const r = { key, left: claimIds.length };
    for (const id of claimIds) this.open.set(id, r);
  }

  /** A claim ended through this process (finished, released, refused): its record may now be stale. */
  ended(claimId: string): void {
    const r = this.open.get(claimId);
    if (!r) return;
    this.open.delete(claimId);
    if (--r.left === 0) this.stale.push(r.key);
  }

  /** Deletes the records found stale (the sweeper's tick; best effort: the prune finds any left). */
  async flush(): Promise<void> {
    if (this.stale.length === 0) return;
    const keys = this.stale;
    this.stale = [];
    await this.db.writeAll([], keys);
  }

  /** Every PRUNE_INTERVAL_MS: deletes the live leases' old records whose claims all ended. */
  async prune(leaseIds: string[]): Promise<void> {
    // The store's clock, as claim ids (the records' keys) carry it.
    const now = this.clock.now();
    if (now - this.lastPrune < PRUNE_INTERVAL_MS) return;
    this.lastPrune = now;
    const before = encodeTime(Math.max(0, now - PRUNE_AGE_MS), 10);
    for (const leaseId of leaseIds) {
      const records = await this.db.queryAll({
        KeyConditionExpression: 'pk = :p AND sk < :s',
        ExpressionAttributeValues: { ':p': S(leaseClaimsPk(leaseId)), ':s': S(before) },
        ConsistentRead: true,
      });
      if (records.length === 0) continue;
      const nodes = await this.db.getMany(records.flatMap(entriesOf).map((e) => nodeKey(e.runId, e.node)));
      const stale = records.filter((r) =>
        entriesOf(r).every((e) => !holds(nodes.get(mk(nodeKey(e.runId, e.node))), e.claimId)),
      );
      // Each delete conditioned on the contents read: a record written over since (add) stays.
      for (const r of stale) {
        const tx = this.db.tx();
        const key = { pk: r.pk!.S!, sk: r.sk!.S! };
        if (r.f) tx.delIf(key, 'f = :f', { ':f': r.f });
        else tx.delIf(key, 'attribute_not_exists(f)');
        await this.db.commit(tx);
      }
    }
  }
}
