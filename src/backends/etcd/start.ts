import type { IRequestOp } from 'etcd3';
import {
  checkStartOptions,
  deadlineAt,
  type GraphSpec,
  initialStatus,
  type NodeState,
  normalizeNodeSpec,
  planStart,
  type Run,
  rfc3339,
  topology,
} from '../../model/index.js';
import { ConflictError } from '../../protocol/errors.js';
import type { StartOptions } from '../../protocol/repository.js';
import type { EtcdContext } from './context.js';
import { ETCD_MAX_TXN_OPS, MAX_TXN_BYTES, MAX_TXN_OPS } from './limits.js';
import { encodeState, encodeStatic } from './nodes.js';
import { type Decision, optimistic } from './optimistic.js';
import { loadRun } from './reads.js';
import { decodeJson, encodeJson, type NodeRecord, type RunRecord } from './records.js';
import { absent, del, get, modIs, put } from './store.js';
import { type DeadlineItem, deadlineItem, timedItemKey } from './work-items.js';
import { getWorkflow } from './workflows.js';

export const COUNTER_SHARDS = 16;
/**
 * Runtimes a chunked start's commit wakes itself: etcd's op budget less the
 * commit's own seven ops (run, index, staging mark, counter, identity, request id, deadline item).
 */
const WAKEUPS_IN_COMMIT = ETCD_MAX_TXN_OPS - 7;

/**
 * Rule 1. A run that fits one transaction is written in one. A larger one is
 * written in bounded chunks first (its node and index keys), then made
 * visible by one commit transaction that writes its run key: readers reach a
 * run only through that key, and claims compare it, so a start that dies
 * half-way leaves nothing usable (s/<run> marks the leftovers for the sweeper).
 *
 * Rule 17: a start with a request id compares the request key absent in its
 * commit and writes it there; one that finds it taken returns that run (its
 * own chunks, if any, are left to the sweeper like any uncommitted start).
 */
export async function startRun(
  ctx: EtcdContext,
  given: GraphSpec | undefined,
  options: StartOptions = {},
): Promise<Run> {
  checkStartOptions(given, options);
  if (options.requestId !== undefined) {
    const earlier = await requestedRun(ctx, options.requestId);
    if (earlier) return earlier;
  }
  const definition = options.workflow ? await getWorkflow(ctx, options.workflow, options.version) : undefined;
  const { spec, identity } = planStart(given, options, definition);
  const { keys } = ctx;
  const now = ctx.clock.now();
  const id = ctx.ids.next(now);
  const topo = topology(spec);
  const runtimes = new Set<string>();
  const ops: IRequestOp[] = [];
  let bytes = 0;
  const states: NodeState[] = [];
  const records: NodeRecord[] = [];
  /** Where each record's state key is among `ops`. */
  const stateOps: number[] = [];
  spec.nodes.forEach((n, i) => {
    const s = normalizeNodeSpec(n);
    const up = topo.upstream.get(n.name)!;
    const status = initialStatus(up.length);
    const rec: NodeRecord = {
      i,
      spec: s,
      up,
      down: topo.downstream.get(n.name)!,
      s: status,
      p: up.length,
      a: 0,
      f: 0,
      e: 0,
    };
    runtimes.add(s.runtime);
    const facts = encodeStatic(rec);
    const value = encodeState(rec);
    bytes += facts.length + value.length + 300;
    stateOps.push(ops.length + 1);
    ops.push(put(keys.static(id, s.name), facts), put(keys.node(id, s.name), value));
    ops.push(put(keys.openNode(status === 'READY' ? 'R' : 'W', id, s.name), Buffer.from(s.runtime)));
    if (status === 'READY') ops.push(put(keys.ready(s.runtime, id, s.name), Buffer.alloc(0)));
    ctx.topology.set(id, s.name, { i, spec: s, runtime: s.runtime, up: rec.up, down: rec.down });
    records.push(rec);
    states.push({ spec: s, status, attempts: [], startedAt: '', finishedAt: '', inputs: {} });
  });
  const deadline = deadlineAt(spec, now);
  const run: RunRecord = {
    id,
    createdAt: now,
    n: spec.nodes.length,
    rts: [...runtimes],
    ...(identity.requestId !== undefined ? { q: identity.requestId } : {}),
    ...(deadline ? { dl: deadline } : {}),
  };
  // Rule 13: the deadline's work item commits with the run (timing.ts cancels it when due).
  const deadlineOps = deadline
    ? [
        put(
          timedItemKey(keys, id, deadlineItem, deadline),
          encodeJson({ at: now, due: deadline } satisfies DeadlineItem),
        ),
      ]
    : [];
  // The identity (params up to WORKFLOW_LIMITS) rides in the commit: count its bytes and its two ops.
  const identityBytes = Buffer.byteLength(JSON.stringify(identity));
  const chunked = ops.length + 8 > MAX_TXN_OPS || bytes + identityBytes > MAX_TXN_BYTES;
  const chunkRevisions = chunked ? await writeChunks(ctx, id, now, [...runtimes], ops) : [];
  // Wakes each runtime's subscribers: a chunked run's READY nodes were written before it was visible.
  const wakeups = [...runtimes].map((rt) => put(keys.committed(rt, id), Buffer.alloc(0)));
  // More runtimes than one transaction can wake: the rest after the commit, the staging mark kept until
  // they are written (a start that dies in between leaves them to the sweeper).
  const wakeLater = wakeups.slice(WAKEUPS_IN_COMMIT);
  const meta = Object.keys(identity).length > 0 ? [put(keys.meta(id), encodeJson(identity))] : [];
  const request = identity.requestId !== undefined ? keys.request(identity.requestId) : undefined;
  if (request) meta.push(put(request, Buffer.from(id)));
  const commitOps = chunked
    ? [
        ...meta,
        put(keys.run(id), encodeJson(run)),
        put(keys.runIndexKey(id), Buffer.from(id)),
        ...deadlineOps,
        ...(wakeLater.length > 0 ? [] : [del(keys.staging(id))]),
        ...wakeups.slice(0, WAKEUPS_IN_COMMIT),
      ]
    : [
        ...meta,
        put(keys.run(id), encodeJson(run)),
        put(keys.runIndexKey(id), Buffer.from(id)),
        ...deadlineOps,
        ...ops,
      ];
  const revision = await commit(ctx, run, commitOps, request);
  if (revision === 'taken') {
    const earlier = await requestedRun(ctx, identity.requestId!);
    if (earlier) return earlier;
    // Taken, then its run deleted by retention in between: start afresh (a new id).
    return startRun(ctx, given, options);
  }
  if (chunked && wakeLater.length > 0)
    await ctx.store.retrying('start (wake-ups)', () =>
      ctx.store.writeAll([...wakeLater, del(keys.staging(id))]),
    );
  // The first claims of this run in this process need not read what it just wrote (SeenState).
  if (revision !== undefined) {
    ctx.seen.setRun(run, revision);
    // A chunked run's states were written by its chunks, each at its own revision.
    for (const [j, rec] of records.entries())
      ctx.seen.setNode(id, rec, chunked ? chunkRevisions[stateOps[j]!]! : revision);
  }
  return {
    id,
    createdAt: rfc3339(now),
    nodes: states,
    edges: spec.edges.map((e) => ({ source: e.source, destination: e.destination })),
    status: 'WAITING',
    ...(deadline ? { deadlineAt: rfc3339(deadline) } : {}),
    ...identity,
  };
}

/** The run an earlier start with this request id created, while it is kept. */
async function requestedRun(ctx: EtcdContext, requestId: string): Promise<Run | undefined> {
  const kv = (await ctx.store.retrying('start', () => ctx.store.range({ key: ctx.keys.request(requestId) })))
    .kvs[0];
  if (!kv) return undefined;
  try {
    return (await ctx.store.retrying('start', () => loadRun(ctx, kv.value.toString()))).run;
  } catch (e) {
    // Retention deleted the run, and its request key with it, since the read above.
    if ((e as { code?: string }).code === 'not_found') return undefined;
    throw e;
  }
}

async function writeChunks(
  ctx: EtcdContext,
  id: string,
  now: number,
  runtimes: string[],
  ops: IRequestOp[],
): Promise<string[]> {
  const { store, keys } = ctx;
  /** The revision that wrote each op (SeenState: the first claims need not read the nodes back). */
  const revisions: string[] = [];
  await store.retrying('start (staging)', () =>
    store.txn({ success: [put(keys.staging(id), encodeJson({ createdAt: now, runtimes }))] }),
  );
  let chunk: IRequestOp[] = [];
  let size = 0;
  const flush = async () => {
    if (chunk.length === 0) return;
    const success = chunk;
    chunk = [];
    size = 0;
    // Plain puts: writing a chunk twice after a lost reply is harmless.
    const res = await store.retrying('start (chunk)', () => store.txn({ success }));
    for (const _ of success) revisions.push(res.header.revision);
  };
  for (const op of ops) {
    const n = (op.request_put?.value?.length ?? 0) + (op.request_put?.key?.length ?? 0);
    if (chunk.length >= MAX_TXN_OPS || size + n > MAX_TXN_BYTES) await flush();
    chunk.push(op);
    size += n;
  }
  await flush();
  return revisions;
}

/**
 * The commit: run key, counter shard (compare-and-swap), and whatever else
 * `ops` holds, atomically, as an optimistic transaction (optimistic.ts): a
 * lost race on the shard reads it back in the same round trip (the failure
 * ops) and tries again. Returns the revision it wrote at; undefined when
 * an earlier try committed without its reply (what it wrote may have changed
 * since). That try may be one of ours or one the etcd client repeated on its
 * own after a member failed: the stored run's creation time tells. Losing
 * every race on the shard for the helper's bound throws UnavailableError: no
 * run was stored (its chunks, if any, are left to the sweeper).
 */
async function commit(
  ctx: EtcdContext,
  run: RunRecord,
  ops: IRequestOp[],
  request?: Buffer,
): Promise<string | 'taken' | undefined> {
  const { store, keys } = ctx;
  const { id, n: nodes } = run;
  const shard = Math.floor(Math.random() * COUNTER_SHARDS);
  const counterKey = keys.counter(shard);
  // The shard as this process last left it, if it did: a stale one fails the compare and is read afresh.
  let counter = ctx.seen.counters.get(shard) ?? (await readCounter(ctx, shard));
  return optimistic(
    store,
    `start of run ${id} (counter shard ${shard})`,
    async (lost): Promise<Decision<string | 'taken' | undefined>> => {
      if (lost) {
        // The run exists: an earlier try committed but its reply was lost.
        const runKv = lost.responses[0]!.response_range.kvs[0];
        if (runKv) {
          // The key is the id; the creation time tells our run from another with the same id.
          if (decodeJson<RunRecord>(runKv.value).createdAt === run.createdAt) return { done: undefined };
          throw new ConflictError(`run id ${id} collided with an existing run`);
        }
        // Another start with this request id committed first.
        if (request && lost.responses[2]!.response_range.kvs[0]) return { done: 'taken' };
        const kv = lost.responses[1]!.response_range.kvs[0];
        counter = { rev: kv ? kv.mod_revision : '0', value: kv ? Number(kv.value.toString()) : 0 };
        ctx.seen.counters.set(shard, counter);
      }
      return {
        compare: [
          absent(keys.run(id)),
          modIs(counterKey, counter.rev),
          ...(request ? [absent(request)] : []),
        ],
        success: [...ops, put(counterKey, Buffer.from(String(counter.value + nodes)))],
        failure: [get(keys.run(id)), get(counterKey), ...(request ? [get(request)] : [])],
        resultOf: (committed) => {
          ctx.seen.counters.set(shard, { rev: committed.header.revision, value: counter.value + nodes });
          return committed.header.revision;
        },
      };
    },
  );
}

async function readCounter(ctx: EtcdContext, shard: number): Promise<{ rev: string; value: number }> {
  const res = await ctx.store.retrying('start', () => ctx.store.range({ key: ctx.keys.counter(shard) }));
  const kv = res.kvs[0];
  return { rev: kv ? kv.mod_revision : '0', value: kv ? Number(kv.value.toString()) : 0 };
}
