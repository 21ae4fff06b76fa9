import type { Logger } from '../../log.js';
import {
  type Attempt,
  type NodeSpec,
  type NodeState,
  type RunConclusion,
  type RunStatus,
  topology,
} from '../../model/index.js';
import { EventQueue, type NodeEvent, type SubscribeOptions, type WatchEvent } from '../../protocol/index.js';
import { type Db, isConnectionError } from './db.js';
import type { Listener, NoticeConsumer } from './listener.js';
import type { NodeDelta, Notice } from './notices.js';
import { readLiveOutputs } from './output.js';
import { finishedAtOf, loadRun } from './reads.js';
import { ATTEMPT_COLUMNS, type AttemptRow, groupAttempts, time } from './rows.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** READY nodes a periodic catch-up reads at most: a few batches of claims for every slot of a large agent process. */
const PERIODIC_CATCH_UP_LIMIT = 1_000;

/** READY nodes a full catch-up reads per statement (whole runs: a page may end with one run's every node). */
const CATCH_UP_PAGE = 2_000;

/**
 * subscribe() and watch(): notices for wake-ups, queries for truth. Every
 * stream catches up with a query whenever LISTEN (re)starts, so nothing that
 * happened while it was not listening is lost.
 */
export class Streams {
  private readonly open = new Set<EventQueue<unknown>>();

  constructor(
    private readonly db: Db,
    private readonly listener: Listener,
    private readonly logger: Logger,
    /** Resolves once the schema is migrated. */
    private readonly ready: () => Promise<void>,
    /**
     * How often a subscription re-queries READY and orphaned nodes, and a
     * watch checks its run for changes it was not told of, while listening.
     * Notices are sent after their transaction commits, so a process that
     * dies in between loses one; this bounds how long such a change can go
     * unseen. 0 disables it.
     */
    private readonly catchUpIntervalMs = 10_000,
    /** How many READY nodes, oldest run first, a periodic catch-up reads (see subscribe). */
    private readonly catchUpLimit = PERIODIC_CATCH_UP_LIMIT,
  ) {}

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const queue = new EventQueue<NodeEvent>(options.signal);
    const runtimes = [...new Set(options.runtimes)];
    const wanted = new Set(runtimes);
    let chain = Promise.resolve();
    let fullQueued = false;
    let oldestQueued = false;
    /**
     * All READY and orphaned nodes of these runtimes (of one run, with runId),
     * or with `limit` only the oldest runs' first `limit` READY nodes (and
     * the orphaned ones). A (re)LISTEN and a notice that something may have
     * changed everywhere read them all, oldest run first, a page at a time:
     * the next page once the subscriber has taken most of the last, so a
     * subscriber that stops taking (an agent pool with work enough queued)
     * holds a backlog in the table, not in its memory. The periodic safety
     * net (a notice lost with a process that died between commit and NOTIFY)
     * reads the oldest ones only, so that its cost does not grow with the
     * backlog: re-reading every READY node every interval made a backlog of B
     * nodes cost B / rate / interval reads per node drained. A node whose
     * notice was lost is among the oldest once what is older has been
     * claimed, and then found.
     */
    const catchUp = (runId?: string, limit?: number) => {
      const full = runId === undefined && limit === undefined;
      if (runId === undefined) {
        // One full catch-up waiting already covers any; one of the oldest covers another of the oldest.
        if (fullQueued || (!full && oldestQueued)) return;
        if (full) fullQueued = true;
        else oldestQueued = true;
      }
      chain = chain.then(() =>
        this.untilDone(queue, async () => {
          if (full) fullQueued = false;
          else if (runId === undefined) oldestQueued = false;
          if (runId !== undefined) for (const e of await this.runNodes(runtimes, runId)) queue.push(e);
          else if (limit !== undefined) {
            for (const e of await this.orphanedNodes(runtimes)) queue.push(e);
            for (const e of await this.oldestReady(runtimes, '', limit)) queue.push(e);
          } else await this.allNodes(queue, runtimes);
        }),
      );
    };
    const consumer: NoticeConsumer = {
      onListening: () => catchUp(),
      onNotice: (n) => {
        if (n.r === '*') return catchUp();
        if (n.cu) return catchUp(n.r);
        for (const [node, runtime] of n.rd ?? [])
          if (wanted.has(runtime)) queue.push({ type: 'NODE_READY', runId: n.r, node, runtime });
        for (const [node, runtime] of n.or ?? [])
          if (wanted.has(runtime)) queue.push({ type: 'NODE_ORPHANED', runId: n.r, node, runtime });
      },
    };
    // Not while the subscriber has a periodic catch-up's worth queued untaken (an agent pool with work enough
    // stops taking): it would find the same oldest nodes again and queue them again, every interval.
    const timer =
      this.catchUpIntervalMs > 0
        ? setInterval(() => {
            if (this.listener.listening && queue.queued < this.catchUpLimit)
              catchUp(undefined, this.catchUpLimit);
          }, this.catchUpIntervalMs)
        : undefined;
    timer?.unref();
    return this.attach(queue, consumer, () => clearInterval(timer));
  }

  /** Every READY and orphaned node of these runtimes, oldest run first, a page at a time (see subscribe). */
  private async allNodes(queue: EventQueue<NodeEvent>, runtimes: string[]): Promise<void> {
    for (const e of await this.orphanedNodes(runtimes)) queue.push(e);
    let after = '';
    while (!queue.isClosed) {
      const page = await this.oldestReady(runtimes, after, CATCH_UP_PAGE);
      if (page.length < CATCH_UP_PAGE) {
        for (const e of page) queue.push(e);
        return;
      }
      // The page may end inside a run: the next one starts after it, so this one takes the run whole.
      after = page.at(-1)!.runId;
      const rest = await this.runNodes(runtimes, after);
      for (const e of page) if (e.runId !== after) queue.push(e);
      for (const e of rest) queue.push(e);
      await queue.drained(CATCH_UP_PAGE / 2);
    }
  }

  /**
   * The oldest runs' first `limit` READY nodes of these runtimes, of runs
   * after `after` (ids compare bytewise): each runtime's read in run order
   * from nodes_ready, so the read costs the limit, not the backlog.
   */
  private async oldestReady(runtimes: string[], after: string, limit: number): Promise<NodeEvent[]> {
    if (runtimes.length === 0) return [];
    const { rows } = await this.db.query<CatchUpRow>(
      'subscribe catch-up (oldest)',
      `SELECT r.* FROM unnest($1::text[]) AS rt(runtime) CROSS JOIN LATERAL (
         SELECT run_id, name, runtime, 'NODE_READY' AS type FROM nodes
         WHERE status = 'READY' AND runtime = rt.runtime AND run_id > $2
           AND (ready_at IS NULL OR ready_at <= adagio_now_ms())
         ORDER BY run_id LIMIT $3) r
       ORDER BY r.run_id LIMIT $3`,
      [runtimes, after, limit],
    );
    return rows.map(catchUpEvent);
  }

  /** Orphaned nodes of these runtimes (few: claims of lapsed leases not yet recovered). */
  private async orphanedNodes(runtimes: string[]): Promise<NodeEvent[]> {
    if (runtimes.length === 0) return [];
    const { rows } = await this.db.query<CatchUpRow>(
      'subscribe catch-up (orphaned)',
      `SELECT run_id, name, runtime, 'NODE_ORPHANED' AS type FROM nodes
       WHERE status = 'RUNNING' AND orphaned AND runtime = ANY($1) ORDER BY run_id`,
      [runtimes],
    );
    return rows.map(catchUpEvent);
  }

  /** READY and orphaned nodes of these runtimes in one run (at most the graph's size). */
  private async runNodes(runtimes: string[], runId: string): Promise<NodeEvent[]> {
    if (runtimes.length === 0) return [];
    const { rows } = await this.db.query<CatchUpRow>(
      'subscribe catch-up (run)',
      `SELECT run_id, name, runtime, 'NODE_READY' AS type FROM nodes
         WHERE status = 'READY' AND (ready_at IS NULL OR ready_at <= adagio_now_ms())
           AND runtime = ANY($1) AND run_id = $2
       UNION ALL
       SELECT run_id, name, runtime, 'NODE_ORPHANED' FROM nodes
         WHERE status = 'RUNNING' AND orphaned AND runtime = ANY($1) AND run_id = $2`,
      [runtimes, runId],
    );
    return rows.map(catchUpEvent);
  }

  /**
   * The snapshot once LISTEN is on, then one event per node transition from
   * the notices (each carries the node's new state; attempts and inputs are
   * read, being immutable once written). Versions drop notices the snapshot
   * already covers; after a reconnect, a re-read reports what changed unseen.
   */
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    const queue = new EventQueue<WatchEvent>(options.signal);
    const seen = new Map<string, number>();
    const specs = new Map<string, NodeSpec>();
    let upstream = new Map<string, string[]>();
    let snapshotSent = false;
    /** Per node: the attempt whose live output was sent, and how many of its bytes. */
    const sentOutput = new Map<string, { attempt: number; length: number }>();
    let chain = Promise.resolve();
    const enqueue = (fn: () => Promise<void>) => {
      chain = chain.then(() => this.untilDone(queue, fn));
    };

    const emit = (
      nodes: { state: NodeState; version: number }[],
      status: RunStatus,
      conclusion?: RunConclusion,
    ) => {
      nodes.forEach(({ state, version }, i) => {
        seen.set(state.spec.name, version);
        const last = i === nodes.length - 1;
        // Within one transaction the run completes with its last node, as the memory backend reports it.
        const runStatus = last || status !== 'COMPLETED' ? status : 'RUNNING';
        queue.push({
          type: 'node',
          runId,
          node: state,
          runStatus,
          runConclusion: runStatus === 'COMPLETED' ? conclusion : undefined,
        });
      });
      if (status === 'COMPLETED') queue.close();
    };

    const reread = async () => {
      const loaded = await loadRun(this.db, runId);
      if (!snapshotSent) {
        for (const n of loaded.nodes) specs.set(n.spec.name, n.spec);
        upstream = topology({ nodes: loaded.nodes.map((n) => n.spec), edges: loaded.run.edges }).upstream;
        for (const [name, v] of loaded.versions) seen.set(name, v);
        for (const n of loaded.nodes)
          if (n.liveOutput)
            sentOutput.set(n.spec.name, { attempt: n.attempts.length + 1, length: n.liveOutput.byteLength });
        snapshotSent = true;
        queue.push({
          type: 'snapshot',
          run: {
            id: loaded.run.id,
            createdAt: time(loaded.run.created_at),
            nodes: loaded.nodes,
            edges: loaded.run.edges,
            status: loaded.status,
            conclusion: loaded.conclusion,
            finishedAt: finishedAtOf(loaded.run, loaded.nodes),
          },
        });
        if (loaded.status === 'COMPLETED') queue.close();
        return;
      }
      const changed = loaded.nodes
        .map((state) => ({ state, version: loaded.versions.get(state.spec.name) ?? 0 }))
        .filter(({ state, version }) => version > (seen.get(state.spec.name) ?? -1));
      emit(changed, loaded.status, loaded.conclusion);
      if (!queue.isClosed) await sendOutput();
    };

    /** Output events for what running attempts streamed past what this watch sent. */
    const sendOutput = async (names?: string[]) => {
      const live = await this.db.tx('watch', (c) => readLiveOutputs(c, runId, names));
      for (const [node, { attempt, output }] of live) {
        const sent = sentOutput.get(node);
        const from = sent?.attempt === attempt ? sent.length : 0;
        if (output.byteLength <= from) continue;
        sentOutput.set(node, { attempt, length: output.byteLength });
        queue.push({ type: 'output', runId, node, attempt, offset: from, chunk: output.subarray(from) });
      }
    };

    const apply = async (notice: Notice) => {
      // COMPLETED: the run's last changes may be in other processes' notices still on their way (each process
      // notifies after its own commit, so notices of different processes can arrive out of commit order). The
      // run is read once more and every change this watch has not seen goes out before it closes.
      if (notice.all || !snapshotSent || notice.rs === 'COMPLETED') return reread();
      if (notice.out) return sendOutput(notice.out.filter((n) => specs.has(n)));
      const fresh = (notice.ch ?? []).filter((d) => specs.has(d.n) && d.v > (seen.get(d.n) ?? -1));
      if (fresh.length === 0) return;
      const names = new Set<string>();
      for (const d of fresh) {
        if (d.a > 0) names.add(d.n);
        if (d.st != null) for (const u of upstream.get(d.n) ?? []) names.add(u);
      }
      const attempts =
        names.size === 0
          ? []
          : (
              await this.db.query<AttemptRow>(
                'watch',
                `SELECT ${ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 AND node = ANY($2)`,
                [runId, [...names]],
              )
            ).rows;
      const byNode = groupAttempts(attempts);
      const nodes = fresh.map((d) => ({
        state: stateAt(d, specs.get(d.n)!, upstream.get(d.n) ?? [], byNode),
        version: d.v,
      }));
      emit(nodes, notice.rs ?? 'RUNNING', notice.rc);
    };

    /**
     * The safety net for a notice that never came (its process died between commit and NOTIFY, its NOTIFY
     * failed, a finish repeated after a lost reply found its result recorded and sent none): the sum of the
     * run's node versions, against what this watch has seen. Versions only grow, so a larger sum means a
     * change unseen, and the run is read again; otherwise this costs one aggregate over the run's nodes.
     */
    const check = async () => {
      if (!snapshotSent) return;
      const { rows } = await this.db.query<{ v: string }>(
        'watch',
        'SELECT coalesce(sum(version), 0) AS v FROM nodes WHERE run_id = $1',
        [runId],
      );
      let known = 0;
      for (const v of seen.values()) known += v;
      if (Number(rows[0]!.v) > known) await reread();
    };
    let checking = false;
    const timer =
      this.catchUpIntervalMs > 0
        ? setInterval(() => {
            if (checking || !this.listener.listening) return;
            checking = true;
            enqueue(() => check().finally(() => (checking = false)));
          }, this.catchUpIntervalMs)
        : undefined;
    timer?.unref();

    const consumer: NoticeConsumer = {
      onListening: () => enqueue(reread),
      onNotice: (n) => {
        if (n.r === '*' || n.r === runId) enqueue(() => apply(n));
      },
    };
    return this.attach(queue, consumer, () => clearInterval(timer));
  }

  private attach<T>(queue: EventQueue<T>, consumer: NoticeConsumer, cleanup?: () => void): EventQueue<T> {
    if (queue.isClosed) {
      cleanup?.();
      return queue;
    }
    this.open.add(queue as EventQueue<unknown>);
    queue.onClose = () => {
      cleanup?.();
      this.listener.remove(consumer);
      this.open.delete(queue as EventQueue<unknown>);
    };
    this.listener.add(consumer);
    return queue;
  }

  /** Repeats a catch-up through connection failures until it succeeds or the stream ends; other errors end the stream. */
  private async untilDone(queue: EventQueue<unknown>, fn: () => Promise<void>): Promise<void> {
    let delay = 50;
    while (!queue.isClosed) {
      try {
        await this.ready();
        await fn();
        return;
      } catch (e) {
        if (!isConnectionError(e) || this.db.isClosed) {
          queue.close(this.db.isClosed ? undefined : e);
          return;
        }
        this.logger.debug('stream catch-up failed; retrying', { error: (e as Error).message });
        await sleep(delay);
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  closeAll(): void {
    for (const q of [...this.open]) q.close();
  }
}

/** A node's state as of the transition a delta describes. */
function stateAt(
  d: NodeDelta,
  spec: NodeSpec,
  upstream: string[],
  attempts: Map<string, Attempt[]>,
): NodeState {
  const inputs: Record<string, Uint8Array> = {};
  if (d.st != null) for (const u of upstream) inputs[u] = attempts.get(u)?.at(-1)?.output ?? new Uint8Array();
  return {
    spec,
    status: d.s,
    attempts: (attempts.get(d.n) ?? []).slice(0, d.a),
    startedAt: time(d.st ?? null),
    finishedAt: time(d.ft ?? null),
    inputs,
    claim: d.c
      ? { id: d.c.id, agentId: d.c.ag, metadata: d.c.md ?? {}, orphaned: d.c.o === true }
      : undefined,
    ...(d.na ? { nextAttemptAt: time(d.na) } : {}),
  };
}

type CatchUpRow = { run_id: string; name: string; runtime: string; type: NodeEvent['type'] };

const catchUpEvent = (r: CatchUpRow): NodeEvent => ({
  type: r.type,
  runId: r.run_id,
  node: r.name,
  runtime: r.runtime,
});
