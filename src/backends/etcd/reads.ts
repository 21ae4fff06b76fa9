import type { IKeyValue, IRequestOp } from 'etcd3';
import {
  type Attempt,
  checkListLimit,
  checkRunFilter,
  conclusionOf,
  type Edge,
  emptyNodeCounts,
  failedNodesSummary,
  filtering,
  identityMatches,
  LIMITS,
  type NodeState,
  type NodeStatus,
  type Run,
  type RunIdentity,
  type RunSummary,
  rfc3339,
  runConclusion,
  runFinishedAt,
  runMatches,
  runStatus,
  type Stats,
  ulidFloor,
  ulidTime,
} from '../../model/index.js';
import { decodeCursor, encodeCursor } from '../../model/requests.js';
import { NotFoundError, TooLargeError } from '../../protocol/errors.js';
import type { ClaimRef, ListRunsQuery, RunPage } from '../../protocol/repository.js';
import type { EtcdContext, NodeTopology } from './context.js';
import { invert, prefixEnd } from './keys.js';
import {
  LIST_SCAN_BUDGET,
  LIST_WINDOWS_MS,
  OPS_PER_LISTED_RUN,
  PAGED_READ,
  READS_PER_TXN,
  RUNS_PER_LIST_TXN,
} from './limits.js';
import { merge, statics, topologyOf } from './nodes.js';
import { groupStreamed } from './output.js';
import {
  attemptOutput,
  decodeAttempt,
  decodeJson,
  type NodeRecord,
  nodeState,
  type RunRecord,
} from './records.js';
import { countPrefix, get, getPrefix, getRange } from './store.js';

/** Everything that only reads: inspect (at one revision), listing and stats. */

export interface LoadedRun {
  run: Run;
  record: RunRecord;
  /** The revision the run was read at. */
  revision: string;
  records: Map<string, NodeRecord>;
}

/** What loadRun reads of a run, at one revision. */
interface RunKvs {
  rev: string;
  run?: IKeyValue;
  nodes: IKeyValue[];
  statics: IKeyValue[];
  meta?: IKeyValue;
  attempts: IKeyValue[];
  outputs: IKeyValue[];
}

/**
 * A prefix's keys at `revision`, PAGED_READ keys a request: an attempt or a
 * streamed chunk holds up to 1 MiB of output (and 64 KiB of metadata), so a
 * page stays far below gRPC's 64 MiB answer.
 */
async function readPaged(ctx: EtcdContext, prefix: Buffer, revision: string): Promise<IKeyValue[]> {
  const out: IKeyValue[] = [];
  const end = prefixEnd(prefix);
  for (let from = prefix; ; ) {
    const res = await ctx.store.range({ key: from, range_end: end, revision, limit: PAGED_READ });
    out.push(...res.kvs);
    if (!res.more || res.kvs.length === 0) return out;
    from = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

/** The whole run at one revision (the given one, or the newest). */
export async function loadRun(ctx: EtcdContext, runId: string, revision?: string): Promise<LoadedRun> {
  const { keys, store } = ctx;
  const at = revision ? { revision } : {};
  const small = [
    { request_range: { key: keys.run(runId), ...at } },
    getPrefix(keys.nodes(runId), at),
    getPrefix(keys.statics(runId), at),
    { request_range: { key: keys.meta(runId), ...at } },
  ];
  let read: RunKvs;
  try {
    const res = await store.txn({
      success: [...small, getPrefix(keys.attempts(runId), at), getPrefix(keys.outputs(runId), at)],
    });
    const kvs = res.responses.map((r) => r.response_range.kvs);
    read = {
      rev: revision ?? res.header.revision,
      run: kvs[0]![0],
      nodes: kvs[1]!,
      statics: kvs[2]!,
      meta: kvs[3]![0],
      attempts: kvs[4]!,
      outputs: kvs[5]!,
    };
  } catch (e) {
    if (!(e instanceof TooLargeError)) throw e;
    // Past gRPC's 64 MiB answer (64 attempts of 1 MiB outputs did it): the small ranges in one transaction, then
    // the attempts and streamed chunks in pages at its revision, the same snapshot.
    const res = await store.txn({ success: small });
    const kvs = res.responses.map((r) => r.response_range.kvs);
    const rev = revision ?? res.header.revision;
    read = {
      rev,
      run: kvs[0]![0],
      nodes: kvs[1]!,
      statics: kvs[2]!,
      meta: kvs[3]![0],
      attempts: await readPaged(ctx, keys.attempts(runId), rev),
      outputs: await readPaged(ctx, keys.outputs(runId), rev),
    };
  }
  const metaKv = read.meta;
  const identity = metaKv ? decodeJson<RunIdentity>(metaKv.value) : {};
  const streamed = groupStreamed(ctx, runId, read.outputs);
  const rev = read.rev;
  const runKv = read.run;
  if (!runKv) throw new NotFoundError('run', runId);
  const record = decodeJson<RunRecord>(runKv.value);
  const facts = new Map<string, NodeTopology>();
  const staticPrefix = keys.statics(runId).length;
  for (const kv of read.statics)
    facts.set(decodeURIComponent(kv.key.subarray(staticPrefix).toString()), topologyOf(kv.value));
  const statePrefix = keys.nodes(runId).length;
  const recs = read.nodes
    .map((kv) => merge(facts.get(decodeURIComponent(kv.key.subarray(statePrefix).toString()))!, kv.value))
    .sort((a, b) => a.i - b.i);
  const attempts = new Map<string, Attempt[]>();
  const lastOutput = new Map<string, Uint8Array>();
  const attemptPrefix = keys.attempts(runId).length;
  for (const kv of read.attempts) {
    const name = decodeURIComponent(kv.key.subarray(attemptPrefix).toString().split('/')[0]!);
    const list = attempts.get(name) ?? [];
    attempts.set(name, list);
    const a = decodeAttempt(kv.value);
    list.push(a);
    // Inputs come from upstream nodes whose last attempt succeeded.
    if (a.conclusion === 'SUCCESS') lastOutput.set(name, attemptOutput(kv.value));
    else lastOutput.delete(name);
  }
  // Which claims are orphaned: their claim key is gone (lease lapsed). Same revision.
  const running = recs.filter((r) => r.s === 'RUNNING' && r.c);
  const live = new Set<string>();
  if (running.length > 0) {
    const claims = {
      responses: await store.readAll(
        running.map((r) => ({
          request_range: {
            key: keys.claim(r.spec.runtime, runId, r.spec.name),
            revision: rev,
            count_only: true,
          },
        })),
      ),
    };
    running.forEach((r, i) => {
      if (Number(claims.responses[i]!.response_range.count) > 0) live.add(r.spec.name);
    });
  }
  const nodes: NodeState[] = recs.map((r) => {
    const inputs: Record<string, Uint8Array> = {};
    if (r.st)
      for (const u of r.up) {
        // Not from one this node counted in as failed or neither (a SUCCESS from before a retry put it back).
        const out = r.dn?.[u] ? undefined : lastOutput.get(u);
        if (out) inputs[u] = out;
      }
    const out = streamed.get(r.spec.name);
    return nodeState(
      r,
      attempts.get(r.spec.name) ?? [],
      inputs,
      r.s === 'RUNNING' && !live.has(r.spec.name),
      out?.attempt === r.a + 1 ? out.output : undefined,
    );
  });
  const edges: Edge[] = [];
  for (const r of recs) for (const u of r.up) edges.push({ source: u, destination: r.spec.name });
  const counts = emptyNodeCounts();
  for (const n of nodes) counts[n.status]++;
  const status = runStatus(counts);
  const conclusion =
    record.conclusion ??
    (status === 'COMPLETED'
      ? runConclusion(nodes, record.cancelled === true, record.to === true)
      : undefined);
  return {
    run: {
      id: runId,
      createdAt: rfc3339(record.createdAt),
      nodes,
      edges,
      status,
      conclusion,
      finishedAt: record.finishedAt ? rfc3339(record.finishedAt) : runFinishedAt(nodes) || undefined,
      ...(record.dl ? { deadlineAt: rfc3339(record.dl) } : {}),
      ...identity,
    },
    record,
    revision: rev,
    records: new Map(recs.map((r) => [r.spec.name, r])),
  };
}

/**
 * Newest first through the inverted index: ascending ranges with a limit, in
 * windows back from the page's newest run (readIndex), so a page of recent
 * runs costs its size, not the stored history. With filters (rule 17) each
 * run's identity is checked, chunk by chunk, stopping at `limit` matches or
 * after LIST_SCAN_BUDGET runs looked at: a page then may be short (even
 * empty) with a cursor past the last run looked at, so a page's cost stays
 * bounded however rare the matches.
 */
export async function listRuns(ctx: EtcdContext, query: ListRunsQuery): Promise<RunPage> {
  const { keys } = ctx;
  const limit = checkListLimit(query.limit);
  checkRunFilter(query);
  const base = keys.runIndex();
  const after = (s: string) => Buffer.concat([base, Buffer.from(invert(s)), Buffer.from([0])]);
  let start = base;
  let end = prefixEnd(base);
  // until (exclusive) and the cursor bound the newest end; since (inclusive) the oldest.
  if (query.until !== undefined) start = maxBuf(start, after(ulidFloor(query.until)));
  if (query.cursor) start = maxBuf(start, after(decodeCursor(query.cursor).runId));
  if (query.since !== undefined) end = minBuf(end, after(ulidFloor(query.since)));
  if (Buffer.compare(start, end) >= 0) return { runs: [] };
  // The newest run the page may hold is about this old: the index is read in windows back from it.
  const cursorMs = query.cursor ? ulidTime(decodeCursor(query.cursor).runId) : undefined;
  const newest = { from: start, end, ms: cursorMs ?? query.until ?? ctx.clock.now(), after };
  if (filtering(query)) return listFiltered(ctx, query, limit, newest);
  const ids = await readIndex(ctx, newest, limit + 1);
  const page = ids.slice(0, limit);
  const summaries = await summarize(ctx, page);
  // Keyed by the page's last id even when that run was deleted in between; etcd pages by id alone.
  const lastId = page[page.length - 1];
  const lastMs = Date.parse(summaries.find((s) => s.id === lastId)?.createdAt ?? '') || 0;
  return {
    runs: summaries,
    nextCursor: ids.length > limit && lastId ? encodeCursor(lastMs, lastId) : undefined,
  };
}

async function listFiltered(
  ctx: EtcdContext,
  query: ListRunsQuery,
  limit: number,
  newest: IndexRange,
): Promise<RunPage> {
  const { keys, store } = ctx;
  const runs: RunSummary[] = [];
  let last: { id: string; ms: number } | undefined;
  // The page's whole budget of index entries in as few reads as readIndex needs (one more tells if there is more).
  const read = await readIndex(ctx, newest, LIST_SCAN_BUDGET + 1);
  const listed = read.slice(0, LIST_SCAN_BUDGET);
  const more = read.length > LIST_SCAN_BUDGET;
  let exhausted = false;
  for (let at = 0; runs.length < limit && at < listed.length; at += READS_PER_TXN) {
    const ids = listed.slice(at, at + READS_PER_TXN);
    exhausted = !more && at + ids.length === listed.length;
    // Identity first (one get each), then summaries of the runs it lets through.
    const metas = await store.retrying('list runs', () => store.readAll(ids.map((id) => get(keys.meta(id)))));
    const candidates = ids.filter((id, i) => {
      const kv = metas[i]!.response_range.kvs[0];
      return identityMatches({ id, ...(kv ? decodeJson<RunIdentity>(kv.value) : {}) }, query);
    });
    const summaries = new Map((await summarize(ctx, candidates)).map((s) => [s.id, s]));
    for (const id of ids) {
      const s = summaries.get(id);
      last = { id, ms: s ? Date.parse(s.createdAt) : (ulidTime(id) ?? 0) };
      if (s && runMatches(s, query)) runs.push(s);
      if (runs.length === limit) {
        exhausted &&= id === ids[ids.length - 1];
        break;
      }
    }
  }
  return { runs, nextCursor: !exhausted && last ? encodeCursor(last.ms, last.id) : undefined };
}

/** The newest-first index from `from` (inclusive) to `end` (exclusive); `ms`: about when its newest run started. */
interface IndexRange {
  from: Buffer;
  end: Buffer;
  ms: number;
  /** The index key just past a run id: a window's bound is `after(ulidFloor(ms))`. */
  after: (id: string) => Buffer;
}

/**
 * Up to `want` run ids from the newest-first index. etcd counts every key of
 * a range it reads, past the range's limit too, so one read to the end of the
 * index costs the whole stored history, every page. The range is read in
 * windows back from the page's newest run (LIST_WINDOWS_MS, then the rest), the
 * next only when the last did not fill the page: a page of recent runs counts
 * the recent ones. Together the windows are the one range, in order.
 */
async function readIndex(ctx: EtcdContext, range: IndexRange, want: number): Promise<string[]> {
  const { store } = ctx;
  const ids: string[] = [];
  let from = range.from;
  const bounds = [
    ...LIST_WINDOWS_MS.map((w) => minBuf(range.end, maxBuf(from, range.after(ulidFloor(range.ms - w))))),
    range.end,
  ];
  for (const bound of bounds) {
    if (Buffer.compare(from, bound) >= 0) continue;
    const res = await store.retrying('list runs', () =>
      store.range({ key: from, range_end: bound, limit: want - ids.length }),
    );
    for (const kv of res.kvs) ids.push(kv.value.toString());
    if (ids.length >= want) break;
    from = bound;
  }
  return ids;
}

/** Summaries of these runs, in order (runs deleted in between left out): RUNS_PER_LIST_TXN per transaction. */
async function summarize(ctx: EtcdContext, ids: string[]): Promise<RunSummary[]> {
  const { keys, store } = ctx;
  const summaries: RunSummary[] = [];
  for (let i = 0; i < ids.length; i += RUNS_PER_LIST_TXN) {
    const batch = ids.slice(i, i + RUNS_PER_LIST_TXN);
    const ops: IRequestOp[] = [];
    for (const id of batch)
      ops.push(
        get(keys.run(id)),
        countPrefix(keys.open('W', id)),
        countPrefix(keys.open('R', id)),
        countPrefix(keys.open('U', id)),
        get(keys.meta(id)),
        // Rule 19: the first failed names in key order; the response's count is all of them.
        getRange(keys.failedRange(id), { limit: LIMITS.maxListedFailedNodes }),
      );
    const r = await store.retrying('list runs', () => store.txn({ success: ops }));
    batch.forEach((id, j) => {
      const [runRes, w, rd, u, meta, x] = r.responses
        .slice(j * OPS_PER_LISTED_RUN, (j + 1) * OPS_PER_LISTED_RUN)
        .map((res) => res.response_range);
      const kv = runRes!.kvs[0];
      if (!kv) return; // deleted in between
      const rec = decodeJson<RunRecord>(kv.value);
      const counts: Record<NodeStatus, number> = {
        WAITING: Number(w!.count),
        READY: Number(rd!.count),
        RUNNING: Number(u!.count),
        COMPLETED: 0,
      };
      counts.COMPLETED = rec.n - counts.WAITING - counts.READY - counts.RUNNING;
      const status = runStatus(counts);
      const metaKv = meta!.kvs[0];
      const { params: _params, ...identity } = metaKv ? decodeJson<RunIdentity>(metaKv.value) : {};
      summaries.push({
        id,
        createdAt: rfc3339(rec.createdAt),
        status,
        // Rule 7 as seal.ts writes it, for a completed run not sealed yet: the failed marks decide.
        conclusion:
          rec.conclusion ??
          (status === 'COMPLETED'
            ? conclusionOf({
                cancelled: rec.cancelled === true,
                failed: Number(x!.count) > 0,
                timedOut: rec.to === true,
              })
            : undefined),
        finishedAt: rec.finishedAt ? rfc3339(rec.finishedAt) : undefined,
        nodeCounts: counts,
        ...failedNodesSummary(
          x!.kvs.map((kv) => kv.value.toString()),
          Number(x!.count),
        ),
        ...identity,
      });
    });
  }
  // A completed run not yet sealed (its sealer died): its finish time is its nodes' latest, as inspect derives it.
  for (const s of summaries)
    if (s.status === 'COMPLETED' && !s.finishedAt) s.finishedAt = (await loadRun(ctx, s.id)).run.finishedAt;
  return summaries;
}

const maxBuf = (a: Buffer, b: Buffer) => (Buffer.compare(a, b) >= 0 ? a : b);
const minBuf = (a: Buffer, b: Buffer) => (Buffer.compare(a, b) <= 0 ? a : b);

/** Count-only ranges over the open-node index and the run keys, plus the node-total counters: no node is read. */
export async function stats(ctx: EtcdContext): Promise<Stats> {
  const { keys, store } = ctx;
  const res = await store.retrying('stats', () =>
    store.txn({
      success: [
        countPrefix(keys.runs()),
        countPrefix(keys.open('W')),
        countPrefix(keys.open('R')),
        countPrefix(keys.open('U')),
        getPrefix(keys.counters()),
      ],
    }),
  );
  const r = res.responses.map((x) => x.response_range);
  let total = 0;
  for (const kv of r[4]!.kvs) total += Number(kv.value.toString());
  const counts = emptyNodeCounts();
  counts.WAITING = Number(r[1]!.count);
  counts.READY = Number(r[2]!.count);
  counts.RUNNING = Number(r[3]!.count);
  // A chunked start in progress has open keys before its counter moves: never report less than zero.
  counts.COMPLETED = Math.max(0, total - counts.WAITING - counts.READY - counts.RUNNING);
  return { runCount: Number(r[0]!.count), nodeCounts: counts };
}

/** WAITING plus READY nodes: stats' two open-node counts without its count of every stored run. */
export async function queuedNodes(ctx: EtcdContext): Promise<number> {
  const { keys, store } = ctx;
  const res = await store.retrying('queued nodes', () =>
    store.txn({ success: [countPrefix(keys.open('W')), countPrefix(keys.open('R'))] }),
  );
  return res.responses.reduce((n, r) => n + Number(r.response_range.count), 0);
}

/** Which claims still hold their node: RUNNING under that claim id, its claim key alive (one read for all). */
export async function claimsHeld(ctx: EtcdContext, claims: ClaimRef[]): Promise<boolean[]> {
  const { keys, store } = ctx;
  if (claims.length === 0) return [];
  return store.retrying('claims held', async () => {
    const runtimes = await Promise.all(
      claims.map(async (c) => (await statics(ctx, c.runId, [c.node])).get(c.node)?.runtime),
    );
    const ops = claims.flatMap((c, i) => [
      get(keys.node(c.runId, c.node)),
      get(keys.claim(runtimes[i] ?? '', c.runId, c.node)),
      get(keys.run(c.runId)),
    ]);
    const res = await store.readAll(ops);
    return claims.map((c, i) => {
      const [node, claim, run] = [0, 1, 2].map((k) => res[3 * i + k]!.response_range.kvs[0]);
      if (!node || !claim || !run || runtimes[i] === undefined) return false;
      // A cancelled run's claims are done for even before cancel has completed its nodes (finish refuses them).
      if (decodeJson<RunRecord>(run.value).cancelled) return false;
      const state = decodeJson<Pick<NodeRecord, 's' | 'c'>>(node.value);
      return state.s === 'RUNNING' && state.c?.id === c.claimId && claim.value.toString() === c.claimId;
    });
  });
}
