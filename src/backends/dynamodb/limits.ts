/**
 * Every budget of the DynamoDB backend, in one place, each derived from (and
 * checked at load against) DynamoDB's own limits: 100 items and 4 MB per
 * TransactWriteItems, 400 KB per item, 1 MB per Query page, 100 keys per
 * BatchGetItem, 25 puts per BatchWriteItem. A budget states what one unit of
 * work costs in items, so a change to a transaction's shape shows here.
 */

import { LIMITS } from '../../model/limits.js';

/** Items one TransactWriteItems may carry. */
export const DYNAMODB_MAX_TXN_ITEMS = 100;
/** Bytes one TransactWriteItems may carry. */
export const DYNAMODB_MAX_TXN_BYTES = 4 * 1024 * 1024;
/** Bytes of one item (names and values). */
export const DYNAMODB_MAX_ITEM_BYTES = 400 * 1024;
/** Keys per BatchGetItem. */
export const DYNAMODB_MAX_BATCH_GET = 100;
/** Requests per BatchWriteItem. */
export const DYNAMODB_MAX_BATCH_WRITE = 25;

/** Items any one of our transactions may carry: the cap less room for the fixed ones (run header, stats shard, work item). */
export const MAX_TXN_ITEMS = DYNAMODB_MAX_TXN_ITEMS - 4;
/** Bytes one of our transactions may carry: three quarters of the cap, for names and framing. */
export const MAX_TXN_BYTES = (DYNAMODB_MAX_TXN_BYTES * 3) / 4;

/**
 * Output bytes per output item: attempt outputs (up to LIMITS.maxOutputBytes,
 * 1 MiB) are stored as parts of this size, so a finish's whole output (4
 * parts) fits in its transaction next to the node and run items.
 */
export const OUTPUT_PART_BYTES = 300 * 1024;
/** A node item larger than this (its spec and adjacency) is refused at start: it would not fit an item with room for state. */
export const MAX_NODE_ITEM_BYTES = DYNAMODB_MAX_ITEM_BYTES - 40 * 1024;
/**
 * What a node item may gain after its start, beside its spec and adjacency:
 * the claim's and the last attempt's metadata (each up to the model's 64 KiB,
 * with their ids), and its counters. Its inputs add INPUT_ENTRY_BYTES and
 * its name per upstream node (recorded as they succeed, `ins`, and copied at
 * its claim, `inputs`): a start counts these too, so a node that could
 * outgrow the item is refused then, not stalled when its join fills up.
 */
export const NODE_STATE_BYTES = 2 * (LIMITS.maxNodeMetadataBytes + 1024) + 8 * 1024;
export const INPUT_ENTRY_BYTES = 2 * 24;

/** Dependents judged inside the finishing transaction: each is one item, plus at most one cascade work item. */
export const INLINE_DEPENDENTS = 40;
/** A finish's own items: node, attempt, output part, claim, header, retry and timeout timers (a settle item counts with the dependents). */
export const FINISH_ITEMS = 7;
/** Items of one batch of finishes (or claims) at most: the transaction's, less the shared stats shard. */
export const BATCH_FINISH_ITEMS = DYNAMODB_MAX_TXN_ITEMS - 1;
/**
 * How long a busy process's next batch of claims or finishes waits for more
 * calls (Batcher's busyWindowMs): a batch shares its run headers and stats
 * shard (claims and hand-offs also their lease check and claim record), and
 * DynamoDB's cost is per item. An idle process's first call goes at once.
 */
export const BATCH_WINDOW_MS = 3;
/** Dependents judged per cascade or fan-out chunk transaction (plus the work items it spawns). */
export const SETTLE_CHUNK = 45;
/** Nodes completed per cancel chunk: node, attempt and claim items each. */
export const CANCEL_CHUNK = 30;
/** Nodes put back per retry chunk. */
export const RETRY_CHUNK = 90;
/** Node items per start BatchWriteItem (not a transaction: the run header, written last, makes the run visible). */
export const START_BATCH = DYNAMODB_MAX_BATCH_WRITE;
/**
 * Items of one batch of starts' header transaction at most (headers, request
 * ids, deadline timers, inline roots or the work item of roots shown after),
 * less the shared stats shard.
 */
export const BATCH_START_ITEMS = MAX_TXN_ITEMS - 1;
/**
 * A run's WAITING nodes go as one `w#` item in its header's transaction (each
 * node item first written when judged, waiting.ts) while their data is at most
 * this big; a larger run's are written as items before its header. A batch of
 * 32 starts then holds at most 1 MB of them, beside its roots' 1.5 MB.
 */
export const WAITING_ITEM_BYTES = 32 * 1024;
/** READY roots a start's header transaction puts into the ready index itself; more go in chunks after it. */
export const INLINE_ROOTS = 80;
/**
 * Ready-index entries a subscriber's poll reads per runtime: a backlog is
 * walked a page per poll (streams.ts), so a poll's cost does not grow with it.
 */
export const READY_POLL_PAGE = 200;
/** Runs a filtered list page looks at, at most (its cost bounded however rare the matches). */
export const LIST_SCAN_BUDGET = 1000;
/** Counter shards of the stats item: transitions add to a random one, so they rarely contend. */
export const STATS_SHARDS = 16;

function within(what: string, items: number): void {
  if (items > MAX_TXN_ITEMS)
    throw new Error(`DynamoDB budget ${what} needs ${items} items; the most is ${MAX_TXN_ITEMS}`);
}
// A finish: node, attempt, up to 4 output parts, claim, a hand-off's lease check and claim record (rule 21),
// then each dependent and its work item (or, handed off, its timeout timer).
within('INLINE_DEPENDENTS', 7 + 2 + 2 * INLINE_DEPENDENTS);
within('SETTLE_CHUNK', 1 + 2 * SETTLE_CHUNK);
within('CANCEL_CHUNK', 3 * CANCEL_CHUNK);
within('RETRY_CHUNK', RETRY_CHUNK + 1);
// A start alone: header, request id, deadline timer, stats shard and its inline roots.
within('INLINE_ROOTS', 4 + INLINE_ROOTS);
within('BATCH_START_ITEMS', BATCH_START_ITEMS + 1);
if (Math.ceil((1024 * 1024 + 64) / OUTPUT_PART_BYTES) * OUTPUT_PART_BYTES > MAX_TXN_BYTES)
  throw new Error('DynamoDB budget OUTPUT_PART_BYTES: a whole output must fit one transaction');
