import type { IRangeResponse, IRequestOp, IWatchResponse, Watcher } from 'etcd3';
import { conclusionOf, emptyNodeCounts, type RunConclusion, runStatus } from '../../model/index.js';
import { NotFoundError } from '../../protocol/errors.js';
import { EventQueue, type NodeEvent, type SubscribeOptions, type WatchEvent } from '../../protocol/index.js';
import type { EtcdContext } from './context.js';
import { prefixEnd } from './keys.js';
import { SUBSCRIBE_PAGE, subscribePage } from './limits.js';
import { merge } from './nodes.js';
import { loadRun } from './reads.js';
import {
  attemptOutput,
  decodeAttempt,
  decodeJson,
  type NodeRecord,
  nodeState,
  type RunRecord,
} from './records.js';
import { get, getPrefix, getRange, lastUnder } from './store.js';

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((r) => {
    const t = setTimeout(r, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        r();
      },
      { once: true },
    );
  });

/**
 * subscribe() and watch(): list at a revision R, then watch from R+1. etcd3
 * resumes a dropped watch from the last revision it delivered; when that
 * revision was compacted away the watcher errors and we list again at a new
 * revision, so no READY node is ever missed (rule 8).
 */
export class Streams {
  private readonly open = new Set<EventQueue<unknown>>();
  /** Watchers being cancelled: the client must outlive them, or etcd3 keeps reconnecting a closed client. */
  private readonly cancelling = new Set<Promise<unknown>>();
  constructor(private readonly ctx: EtcdContext) {}

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const queue = new EventQueue<NodeEvent>(options.signal);
    if (queue.isClosed) return queue;
    const ac = new AbortController();
    this.track(queue, ac);
    for (const rt of new Set(options.runtimes)) void this.feed(rt, queue, ac.signal);
    return queue;
  }

  /**
   * One runtime's READY and orphaned nodes: list, watch, and on a lost watch,
   * list again. The READY queue is listed a page at a time (`subscribePage`,
   * oldest run first), the next page once the subscriber has taken most of
   * the last, so a backlog stays in etcd rather than in this process (and no
   * response outgrows gRPC's message limit). The watch runs from the first
   * page's revision R meanwhile; later pages are read at the then current
   * revision. Nothing is missed: a node READY at R and still READY when its
   * page is read is in that page, one READY later than R is in the watch.
   */
  private async feed(runtime: string, queue: EventQueue<NodeEvent>, signal: AbortSignal): Promise<void> {
    const { keys, store } = this.ctx;
    let delay = 50;
    while (!signal.aborted) {
      // One listing and its watch; a failure of either ends both, and we list again.
      const round = new AbortController();
      const stop = () => round.abort();
      signal.addEventListener('abort', stop, { once: true });
      try {
        const res = await store.txn({
          success: [
            getPrefix(keys.queue(runtime), { keys_only: true, limit: SUBSCRIBE_PAGE }),
            getPrefix(keys.runningOf(runtime), { keys_only: true }),
            getPrefix(keys.claimsOf(runtime), { keys_only: true }),
          ],
        });
        const [ready, running, claims] = res.responses.map((r) => r.response_range);
        const after = this.pushReady(runtime, ready!, queue);
        const live = new Set(
          claims!.kvs.map((kv) => keys.parseRuntimeKey(kv.key, runtime)).map((k) => `${k?.run}/${k?.node}`),
        );
        for (const kv of running!.kvs) {
          const k = keys.parseRuntimeKey(kv.key, runtime);
          if (k && !live.has(`${k.run}/${k.node}`))
            queue.push({ type: 'NODE_ORPHANED', runId: k.run, node: k.node, runtime });
        }
        if (after)
          void this.readyAfter(runtime, after, queue, round.signal).catch((e: unknown) => round.abort(e));
        await this.watchRuntime(runtime, BigInt(res.header.revision) + 1n, queue, round.signal);
        if (!signal.aborted) throw round.signal.reason; // the watch ended because a page read failed
        delay = 50;
      } catch (e) {
        if (signal.aborted) return;
        this.ctx.logger.debug('subscription lost; listing again', { runtime, error: (e as Error).message });
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 2_000);
      } finally {
        round.abort();
        signal.removeEventListener('abort', stop);
      }
    }
  }

  /**
   * Pushes a page of READY queue keys; answers where to read on from and how
   * much, when the range had more.
   */
  private pushReady(
    runtime: string,
    range: IRangeResponse,
    queue: EventQueue<NodeEvent>,
  ): { from: Buffer; limit: number } | undefined {
    for (const kv of range.kvs) {
      const k = this.ctx.keys.parseRuntimeKey(kv.key, runtime);
      if (k) queue.push({ type: 'NODE_READY', runId: k.run, node: k.node, runtime });
    }
    const last = range.kvs.at(-1);
    if (!range.more || !last) return undefined;
    return {
      from: Buffer.concat([last.key, Buffer.from([0])]),
      limit: subscribePage(Number(range.count) - range.kvs.length),
    };
  }

  /** The READY queue's further pages, each read once the subscriber has taken half of the last. */
  private async readyAfter(
    runtime: string,
    next: { from: Buffer; limit: number },
    queue: EventQueue<NodeEvent>,
    signal: AbortSignal,
  ): Promise<void> {
    const { keys, store } = this.ctx;
    const end = prefixEnd(keys.queue(runtime));
    let page: { from: Buffer; limit: number } | undefined = next;
    let held = SUBSCRIBE_PAGE;
    while (page) {
      await queue.drained(held / 2, signal);
      if (signal.aborted || queue.isClosed) return;
      const res = await store.txn({
        success: [getRange({ key: page.from, range_end: end }, { keys_only: true, limit: page.limit })],
      });
      if (signal.aborted) return;
      held = page.limit;
      page = this.pushReady(runtime, res.responses[0]!.response_range, queue);
    }
  }

  /** Resolves when the signal aborts; rejects when the watch is lost for good (e.g. compacted). */
  private async watchRuntime(
    runtime: string,
    from: bigint,
    queue: EventQueue<NodeEvent>,
    signal: AbortSignal,
  ) {
    const { keys, store } = this.ctx;
    /**
     * A chunked run committed: its READY nodes, announced before it was visible (their claims found no run),
     * are listed once more. Nothing else announces them again, so a failed read is repeated until it is done.
     */
    const listCommitted = async (run: string) => {
      let delay = 50;
      while (!signal.aborted && !queue.isClosed) {
        try {
          const r = await store.txn({ success: [getPrefix(keys.queue(runtime, run), { keys_only: true })] });
          for (const kv of r.responses[0]!.response_range.kvs) {
            const q = keys.parseRuntimeKey(kv.key, runtime);
            if (q) queue.push({ type: 'NODE_READY', runId: q.run, node: q.node, runtime });
          }
          return;
        } catch (e) {
          this.ctx.logger.warn('could not list a committed run; retrying', { run, error: String(e) });
          await sleep(delay, signal);
          delay = Math.min(delay * 2, 2_000);
        }
      }
    };
    const onData = (res: IWatchResponse) => {
      // A revision's events arrive together: a claim key deleted without its running key went with its lease.
      const runningGone = new Set<string>();
      for (const ev of res.events) {
        const k = keys.parseRuntimeKey(ev.kv.key, runtime);
        if (k?.kind === 'u' && ev.type === 'Delete')
          runningGone.add(`${ev.kv.mod_revision}/${k.run}/${k.node}`);
      }
      for (const ev of res.events) {
        const k = keys.parseRuntimeKey(ev.kv.key, runtime);
        if (!k) {
          // t/<rt>/k/<run>: a chunked run committed; its READY nodes were written before it was visible.
          const committed = ev.kv.key.toString().slice(keys.runtime(runtime).length);
          if (committed.startsWith('k/') && ev.type === 'Put') void listCommitted(committed.slice(2));
          continue;
        }
        if (k.kind === 'q' && ev.type === 'Put')
          queue.push({ type: 'NODE_READY', runId: k.run, node: k.node, runtime });
        else if (
          k.kind === 'c' &&
          ev.type === 'Delete' &&
          !runningGone.has(`${ev.kv.mod_revision}/${k.run}/${k.node}`)
        )
          queue.push({ type: 'NODE_ORPHANED', runId: k.run, node: k.node, runtime });
      }
    };
    await this.watchPrefix(keys.runtime(runtime), from, onData, signal);
  }

  /** Runs an etcd watcher until the signal aborts (resolves) or the watcher fails (rejects). */
  private async watchPrefix(
    prefix: Buffer,
    from: bigint,
    onData: (res: IWatchResponse) => void,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    const watcher: Watcher = this.ctx.store.client
      .watch()
      .prefix(prefix)
      .startRevision(from.toString())
      .watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        watcher.on('data', onData);
        watcher.on('error', reject);
        // Our own list-then-watch is correct by construction; etcd3's silent resume after a reconnect is not relied on.
        watcher.on('disconnected', () => reject(new Error('etcd watch disconnected')));
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } finally {
      watcher.removeAllListeners('data');
      const c = watcher.cancel().catch(() => undefined);
      this.cancelling.add(c);
      void c.finally(() => this.cancelling.delete(c));
    }
  }

  /** The snapshot at revision R, then each node key's change from R+1, until the run completes. */
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    const queue = new EventQueue<WatchEvent>(options.signal);
    if (queue.isClosed) return queue;
    const ac = new AbortController();
    this.track(queue, ac);
    void this.follow(runId, queue, ac.signal);
    return queue;
  }

  private async follow(runId: string, queue: EventQueue<WatchEvent>, signal: AbortSignal): Promise<void> {
    const { keys } = this.ctx;
    let revision: string | undefined;
    let records = new Map<string, NodeRecord>();
    let delay = 50;
    while (!signal.aborted && !queue.isClosed) {
      try {
        // Changes become events in order, one at a time.
        let chain = Promise.resolve();
        const emit = (rec: NodeRecord, rev: string) => {
          chain = chain.then(async () => {
            if (!queue.isClosed) await this.nodeEvent(runId, rec, rev, records, queue);
          });
        };
        if (!revision) {
          const loaded = await loadRun(this.ctx, runId);
          revision = loaded.revision;
          records = loaded.records;
          queue.push({ type: 'snapshot', run: loaded.run });
          if (loaded.run.status === 'COMPLETED') return queue.close();
        } else {
          // After a lost watch: report what changed while we were away, then watch from there.
          const loaded = await loadRun(this.ctx, runId);
          const before = records;
          records = new Map(before);
          for (const [name, rec] of loaded.records)
            if (JSON.stringify(rec) !== JSON.stringify(before.get(name))) emit(rec, loaded.revision);
          revision = loaded.revision;
          await chain;
          if (queue.isClosed) return;
        }
        const onData = (res: IWatchResponse) => {
          for (const ev of res.events)
            if (ev.type === 'Put') {
              const name = decodeURIComponent(ev.kv.key.subarray(keys.nodes(runId).length).toString());
              const known = records.get(name);
              if (!known) continue;
              const next = merge(known, ev.kv.value);
              // Only the streamed count moved: an append, sent as its chunks rather than a node event.
              if (onlyOutputGrew(known, next)) {
                records.set(name, next);
                chain = chain.then(() => this.outputEvents(runId, known, next, ev.kv.mod_revision, queue));
              } else emit(next, ev.kv.mod_revision);
            }
        };
        const from = BigInt(revision) + 1n;
        await this.watchPrefix(keys.nodes(runId), from, onData, signal);
        await chain;
        return;
      } catch (e) {
        if (signal.aborted || queue.isClosed) return;
        if (e instanceof NotFoundError) return queue.close(e);
        // Compacted past our revision, or the store is away: read again and carry on.
        this.ctx.logger.debug('watch lost; reading the run again', {
          run: runId,
          error: (e as Error).message,
        });
        await sleep(delay, signal);
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  /** The chunks an append wrote (seq from `before.o.n` up to `after.o.n`), read at its revision. */
  private async outputEvents(
    runId: string,
    before: NodeRecord,
    after: NodeRecord,
    rev: string,
    queue: EventQueue<WatchEvent>,
  ): Promise<void> {
    if (queue.isClosed) return;
    const { keys, store } = this.ctx;
    const name = after.spec.name;
    const attempt = after.a + 1;
    const from = before.o?.n ?? 0;
    const to = after.o?.n ?? 0;
    const ops: IRequestOp[] = [];
    for (let seq = from; seq < to; seq++)
      ops.push({ request_range: { key: keys.outputChunk(runId, name, attempt, seq), revision: rev } });
    const responses = await store.retrying('watch', () => store.readAll(ops));
    let offset = before.o?.l ?? 0;
    for (const r of responses)
      for (const kv of r.response_range.kvs) {
        queue.push({ type: 'output', runId, node: name, attempt, offset, chunk: kv.value });
        offset += kv.value.byteLength;
      }
  }

  /** One node's new state as a watch event, with the run's status as of that revision. */
  private async nodeEvent(
    runId: string,
    rec: NodeRecord,
    rev: string,
    records: Map<string, NodeRecord>,
    queue: EventQueue<WatchEvent>,
  ): Promise<void> {
    const { keys, store } = this.ctx;
    records.set(rec.spec.name, rec);
    const counts = emptyNodeCounts();
    for (const r of records.values()) counts[r.s]++;
    const status = runStatus(counts);
    const at = (op: IRequestOp): IRequestOp => ({ request_range: { ...op.request_range!, revision: rev } });
    const ops = [at(getPrefix(keys.attempts(runId, rec.spec.name)))];
    if (rec.st) for (const u of rec.up) ops.push(at(lastUnder(keys.attempts(runId, u))));
    ops.push(at(get(keys.run(runId))), at(getRange(keys.failedRange(runId), { limit: 1 })));
    const r = { responses: await store.retrying('watch', () => store.readAll(ops)) };
    const attempts = r.responses[0]!.response_range.kvs.map((kv) => decodeAttempt(kv.value));
    const inputs: Record<string, Uint8Array> = {};
    if (rec.st)
      rec.up.forEach((u, i) => {
        const kv = r.responses[1 + i]!.response_range.kvs[0];
        inputs[u] = kv ? attemptOutput(kv.value) : new Uint8Array();
      });
    let conclusion: RunConclusion | undefined;
    if (status === 'COMPLETED') {
      const runKv = r.responses[r.responses.length - 2]!.response_range.kvs[0];
      const failed = r.responses[r.responses.length - 1]!.response_range.kvs.length > 0;
      const run = runKv ? decodeJson<RunRecord>(runKv.value) : undefined;
      conclusion = conclusionOf({ cancelled: run?.cancelled === true, failed, timedOut: run?.to === true });
    }
    queue.push({
      type: 'node',
      runId,
      // A watcher sees claims as recorded; an orphan shows in inspect (its claim key is gone, the node unchanged).
      node: nodeState(rec, attempts, inputs, false),
      runStatus: status,
      runConclusion: conclusion,
    });
    if (status === 'COMPLETED') queue.close();
  }

  private track(queue: EventQueue<unknown>, ac: AbortController): void {
    this.open.add(queue);
    queue.onClose = () => {
      ac.abort();
      this.open.delete(queue);
    };
  }

  /** Ends every stream and waits (bounded) for their watchers to be cancelled. */
  async closeAll(): Promise<void> {
    for (const q of [...this.open]) q.close();
    await new Promise((r) => setImmediate(r));
    const pending = Promise.allSettled([...this.cancelling]);
    await Promise.race([pending, new Promise((r) => setTimeout(r, 2_000).unref())]);
  }
}

/** True when a node record changed in its streamed output only (an append). */
function onlyOutputGrew(before: NodeRecord, after: NodeRecord): boolean {
  if ((after.o?.n ?? 0) <= (before.o?.n ?? 0)) return false;
  const { o: _a, ...restBefore } = before;
  const { o: _b, ...restAfter } = after;
  return JSON.stringify(restBefore) === JSON.stringify(restAfter);
}
