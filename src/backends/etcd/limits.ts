/**
 * Every transaction budget of the etcd backend, in one place, each derived
 * from (and checked at load against) etcd's own limits: 128 operations per
 * transaction (--max-txn-ops; compares count apart, against the same cap) and
 * 1.5 MiB per request (--max-request-bytes). A budget states what one unit of
 * work costs in operations, so a change to a transaction's shape shows here.
 */

/** etcd's default --max-txn-ops. */
export const ETCD_MAX_TXN_OPS = 128;
/** etcd's default --max-request-bytes. */
export const ETCD_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;

/** Operations (or compares) any one of our transactions may carry: the cap less room for a few fixed ones. */
export const MAX_TXN_OPS = ETCD_MAX_TXN_OPS - 8;
/** Bytes of values one transaction may write: two thirds of the request cap, for keys and framing. */
export const MAX_TXN_BYTES = (ETCD_MAX_REQUEST_BYTES * 2) / 3;

/** Pure reads split into transactions of this many ranges (Store.readAll, node statics). */
export const READS_PER_TXN = 100;

/** Reads plus writes a claim (or a batch of claims or finishes) may carry in one transaction. */
export const INLINE_READS = 110;

/** A dependent counted down inside a transaction: up to 4 ops (open-node keys, ready key, state; or close key, state, cascade item) and 1 compare. */
export const OPS_PER_DEPENDENT = 4;
/** Ops of a finish besides its dependents: attempt, state, claim, running and open keys, failed mark, work item, timeout item, seal probe (a read, seal.ts). */
export const FINISH_FIXED_OPS = 9;
/** Dependents counted down inside the finishing transaction itself; more go to a fan-out work item. */
export const INLINE_DEPENDENTS = 20;
/** Dependents per fan-out chunk transaction, plus its cursor. */
export const FAN_OUT_CHUNK = 25;

/** Nodes per cascade, cancel or retry transaction: up to 6 ops each (open keys, claim, attempt, streamed output, state; a retry's state, open key and failed mark) and 1 compare. */
export const SETTLE_BATCH = 20;
/** A retry's work item (the names it was given) at most, beside the run key in one transaction. */
export const MAX_RETRY_ITEM_BYTES = 256 * 1024;
/** gRPC's answer limit this client sets (store.ts): a run's reads past it go in pages. */
export const ETCD_MAX_ANSWER_BYTES = 64 * 1024 * 1024;
/** Attempts or streamed chunks a paged read asks for at once: each up to 1 MiB of output and 64 KiB of metadata. */
export const PAGED_READ = 32;
export const OPS_PER_SETTLED_NODE = 6;

/** Runs of a page summarised per transaction by the runs list: two gets (run, identity), three count ranges and the failed names (a limited range) each. */
export const OPS_PER_LISTED_RUN = 6;
export const RUNS_PER_LIST_TXN = Math.floor(MAX_TXN_OPS / OPS_PER_LISTED_RUN);

/**
 * READY queue keys a subscription lists per read (streams.ts), at least: the
 * next page is read once the subscriber has taken half of the last, so a
 * backlog stays in etcd. etcd counts every key of a range it reads, past its
 * limit too (the response's `count`), so a read costs the backlog behind it:
 * a page is a share (1/SUBSCRIBE_PAGE_SHARE) of what is left, which keeps that
 * count to a few dozen keys per key delivered, up to SUBSCRIBE_PAGE_MAX keys
 * held (a few MB; a read stays far below gRPC's 64 MiB message limit).
 */
export const SUBSCRIBE_PAGE = 1000;
export const SUBSCRIBE_PAGE_SHARE = 32;
export const SUBSCRIBE_PAGE_MAX = 16_000;

/** The next page's size, `left` READY keys behind the last page read. */
export function subscribePage(left: number): number {
  return countedPage(left, SUBSCRIBE_PAGE, SUBSCRIBE_PAGE_MAX);
}

/**
 * A page of a long range read in pages, `left` keys behind the last one (the
 * last response's count less its keys): a share of what is left, between
 * `least` and `most`, so the keys etcd counts per key read stay a few dozen
 * (SUBSCRIBE_PAGE_SHARE) where a fixed page would make the reads quadratic.
 */
export function countedPage(left: number, least: number, most: number): number {
  return Math.min(most, Math.max(least, Math.ceil(left / SUBSCRIBE_PAGE_SHARE)));
}

/** Run records a retention pass reads per page (retention.ts), at least and at most (countedPage). */
export const RETENTION_PAGE = 200;
export const RETENTION_PAGE_MAX = 2_000;

/** Due timed work items (d/, timing.ts) a timers sweep reads per range: it reads on while a page comes back full. */
export const TIMERS_PAGE = 200;

/**
 * How far back from a list page's newest run (ms) the newest-first index is
 * read first, then further, before the rest (reads.ts readIndex): etcd counts
 * every key of a range it reads, so a page of recent runs reads only a
 * window's worth of the index, not the whole history. At most one more read a
 * page than windows.
 */
export const LIST_WINDOWS_MS = [60_000, 3_600_000, 86_400_000];

/**
 * Runs one filtered list page looks at, at most (rule 17): past it the page
 * ends short with a cursor, so a rare filter costs pages, not one unbounded
 * read. Read READS_PER_TXN index entries and identities at a time.
 */
export const LIST_SCAN_BUDGET = 1000;

/**
 * Races an optimistic transaction (optimistic.ts, and claim, finish and
 * output's own loops) may lose in a row before UnavailableError; Store's
 * `maxRaceRounds` overrides it. Each loss means another process moved on, so
 * only a livelock or a pathologically hot key gets near it: at ~1 ms a round,
 * 10,000 rounds is seconds of losing every race.
 */
export const MAX_ROUNDS = 10_000;

function within(what: string, ops: number): void {
  if (ops > MAX_TXN_OPS) throw new Error(`etcd budget ${what} needs ${ops} ops; the most is ${MAX_TXN_OPS}`);
}
within('READS_PER_TXN', READS_PER_TXN);
within('INLINE_READS', INLINE_READS);
within('INLINE_DEPENDENTS', FINISH_FIXED_OPS + OPS_PER_DEPENDENT * INLINE_DEPENDENTS);
within('FAN_OUT_CHUNK', 1 + OPS_PER_DEPENDENT * FAN_OUT_CHUNK);
within('SETTLE_BATCH', OPS_PER_SETTLED_NODE * SETTLE_BATCH);
within('RUNS_PER_LIST_TXN', OPS_PER_LISTED_RUN * RUNS_PER_LIST_TXN);
