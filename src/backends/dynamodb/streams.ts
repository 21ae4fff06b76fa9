import { checkRunId, type RunConclusion, type RunStatus, runStatus } from '../../model/index.js';
import { EventQueue, type NodeEvent, type SubscribeOptions, type WatchEvent } from '../../protocol/index.js';
import { type DynamoContext, type LocalEvent, type ReadyEvent, readyStamp } from './context.js';
import { type Item, S } from './db.js';
import {
  attemptsOf,
  attemptsPrefix,
  decodeNode,
  decodeRun,
  type NodeData,
  type NodeItem,
  nodeState,
  outputPrefix,
  runPk,
} from './items.js';
import { READY_POLL_PAGE } from './limits.js';
import { inspectWithItems } from './reads.js';
import { READY_INDEX } from './table.js';

/**
 * Subscribe (rule 8) and watch. Catch-up and wake-ups both come from the
 * sparse `ready` index (READY nodes and orphaned claims by runtime): a
 * subscriber queries it at once and again every poll interval, and
 * immediately when this process made a node of its runtimes READY. A poll
 * reads one page of READY_POLL_PAGE entries per runtime (limits.ts) and the
 * next poll goes on after it, back to the start past the last: a backlog is
 * walked oldest run first over successive polls, so a poll costs the same
 * however many nodes wait. An entry is delivered again when its node's
 * version changed (a node READY again later, a retry), and again every
 * REDELIVER_MS while it stays unclaimed, at the latest when the walk comes
 * round to it again (a claim that failed, a claimer that died: delivery is
 * at least once), and one never seen is never missed: the index holds it
 * until it is claimed, and every walk passes it. While a page's worth of
 * events waits untaken the subscriber does not poll: a consumer that stops
 * taking leaves the backlog in the index, not in its queue.
 */
/** A READY node still unclaimed this long after it was delivered is delivered again. */
const REDELIVER_MS = 5_000;

export class Streams {
  constructor(
    private readonly ctx: DynamoContext,
    private readonly pollMs: number,
  ) {}

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const queue = new EventQueue<NodeEvent>(options.signal);
    const runtimes = [...new Set(options.runtimes)];
    const delivered = new Map<string, { stamp: string; at: number }>();
    let wake: (() => void) | undefined;
    let dirty = false;
    /** Per runtime, where the next poll's page starts (after this index key; absent: at the start). */
    const after = new Map<string, Item>();
    const offer = (rt: string, runId: string, node: string, stamp: string, orphan: boolean) => {
      const key = `${rt}\u0000${runId}#${node}`;
      const last = delivered.get(key);
      const now = performance.now();
      if (last?.stamp === stamp && now - last.at < REDELIVER_MS) return;
      delivered.set(key, { stamp, at: now });
      queue.push({ type: orphan ? 'NODE_ORPHANED' : 'NODE_READY', runId, node, runtime: rt });
    };
    const onReady = (e: ReadyEvent) => {
      if (!runtimes.includes(e.runtime)) return;
      // This process's own commit: delivered as it is, no index query (others' are found by the poll).
      if (e.node)
        return offer(e.runtime, e.node.runId, e.node.name, e.node.stamp, e.node.stamp.endsWith('O'));
      dirty = true;
      wake?.();
    };
    this.ctx.bus.on('ready', onReady);
    this.ctx.bus.once('close', () => queue.close());
    queue.onClose = () => {
      this.ctx.bus.off('ready', onReady);
      wake?.();
    };
    void (async () => {
      while (!queue.isClosed) {
        // A page's worth untaken (an agent pool with work enough stops taking): the backlog stays in the
        // index, and nothing delivered is queued again, until the subscriber takes.
        if (queue.queued >= READY_POLL_PAGE) {
          await this.pause((w) => (wake = w));
          continue;
        }
        dirty = false;
        try {
          for (const rt of runtimes) {
            const began = performance.now();
            const from = after.get(rt);
            const page = await this.ctx.db.query({
              IndexName: READY_INDEX,
              KeyConditionExpression: 'rt = :rt',
              ExpressionAttributeValues: { ':rt': S(rt) },
              Limit: READY_POLL_PAGE,
              ExclusiveStartKey: from,
            });
            const items = (page.Items ?? []) as Item[];
            const to = page.LastEvaluatedKey as Item | undefined;
            if (to) after.set(rt, to);
            else after.delete(rt);
            // The index range this page covered: (from, to], or to the end.
            const covered = (rk: string) => (!from || rk > from.rk!.S!) && (!to || rk <= to.rk!.S!);
            const present = new Set<string>();
            for (const item of items) {
              const rk = item.rk!.S!;
              present.add(`${rt}\u0000${rk}`);
              const at = rk.indexOf('#');
              const ev = item.ev!.S!;
              offer(rt, rk.slice(0, at), rk.slice(at + 1), readyStamp(item.v!.N!, ev), ev === 'O');
            }
            // Gone from the range read: forgotten, unless delivered by a wake-up since this query began.
            const prefix = `${rt}\u0000`;
            for (const [k, last] of delivered)
              if (
                k.startsWith(prefix) &&
                covered(k.slice(prefix.length)) &&
                !present.has(k) &&
                last.at < began
              )
                delivered.delete(k);
          }
        } catch (e) {
          if (queue.isClosed) return;
          this.ctx.logger.debug('dynamodb subscribe poll failed; retrying', { error: (e as Error).message });
        }
        if (!dirty) await this.pause((w) => (wake = w));
      }
    })();
    return queue;
  }

  /**
   * The run now, then its node transitions. Transitions this process makes
   * arrive as they commit (in order, each one); those of other processes are
   * found by polling the run's nodes, so a node changed twice within one poll
   * interval elsewhere shows its latest state. A state older than one sent
   * (by version) is never sent. The run's end is sent after a read of its
   * nodes that follows its seal, so no other process's change before it is
   * missed, even when this process sealed it.
   */
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    checkRunId(runId);
    const queue = new EventQueue<WatchEvent>(options.signal);
    let wake: (() => void) | undefined;
    let dirty = false;
    const local: LocalEvent[] = [];
    const onRun = (id: string) => {
      if (id !== runId) return;
      dirty = true;
      wake?.();
    };
    const onLocal = (e: LocalEvent) => {
      if (e.runId !== runId) return;
      local.push(e);
      wake?.();
    };
    this.ctx.bus.on('run', onRun);
    this.ctx.bus.on('local', onLocal);
    this.ctx.bus.once('close', () => queue.close());
    const stop = () => {
      this.ctx.bus.off('run', onRun);
      this.ctx.bus.off('local', onLocal);
    };
    queue.onClose = () => {
      stop();
      wake?.();
    };
    const started = inspectWithItems(this.ctx, runId);
    void (async () => {
      try {
        const { run, items } = await started;
        queue.push({ type: 'snapshot', run });
        if (run.conclusion) return queue.close();
        // What was sent: each node's version and state, and how much of its running attempt's output, as the
        // snapshot showed them (a transition committed after its read is sent, even one before this line).
        const versions = new Map<string, number>();
        const sent = new Map<string, string>();
        const streamed = new Map<string, number>();
        for (const item of items) {
          if (!item.sk!.S!.startsWith('n#')) continue;
          const n = decodeNode(item);
          versions.set(n.d.spec.name, n.v);
          sent.set(n.d.spec.name, signature(n.d));
          streamed.set(n.d.spec.name, n.d.live);
        }
        let lastSent: NodeData | undefined;
        const sendNode = async (n: NodeItem, status: RunStatus, conclusion?: RunConclusion) => {
          const name = n.d.spec.name;
          if ((versions.get(name) ?? 0) > n.v) return;
          versions.set(name, n.v);
          lastSent = n.d;
          if (n.d.status !== 'RUNNING') streamed.set(name, 0);
          if (sent.get(name) === signature(n.d) && !conclusion) return;
          sent.set(name, signature(n.d));
          queue.push({
            type: 'node',
            runId,
            node: await this.nodeWithAttempts(runId, n.d),
            runStatus: status === 'COMPLETED' && !conclusion ? 'RUNNING' : status,
            runConclusion: conclusion,
          });
        };
        const sendSealed = async (conclusion: RunConclusion) => {
          if (lastSent) {
            queue.push({
              type: 'node',
              runId,
              node: await this.nodeWithAttempts(runId, lastSent),
              runStatus: 'COMPLETED',
              runConclusion: conclusion,
            });
          }
          queue.close();
        };
        while (!queue.isClosed) {
          if (!dirty && local.length === 0) await this.pause((w) => (wake = w));
          while (local.length > 0 && !queue.isClosed) {
            const e = local.shift()!;
            if (e.kind === 'node') await sendNode(e.node, e.runStatus);
            else if (e.kind === 'sealed') {
              // This process sealed the run, but other processes' last changes may not have been polled yet:
              // the read below sends them, then the run's end (the header says it is concluded).
              dirty = true;
            } else {
              const have = streamed.get(e.node) ?? 0;
              const end = e.offset + e.chunk.byteLength;
              if (end <= have) continue;
              streamed.set(e.node, end);
              const from = Math.max(have, e.offset);
              queue.push({
                type: 'output',
                runId,
                node: e.node,
                attempt: e.attempt,
                offset: from,
                chunk: e.chunk.subarray(from - e.offset),
              });
            }
          }
          if (queue.isClosed) return;
          dirty = false;
          // The header first: when it says completed, the nodes read after it hold every change.
          const header = await this.ctx.db.get({ pk: runPk(runId), sk: '#' });
          if (!header) return queue.close();
          const h = decodeRun(header);
          const nodes = (await this.ctx.db.partition(runPk(runId), 'n#'))
            .map(decodeNode)
            .sort((a, b) => a.d.i - b.d.i);
          // This process committed meanwhile: its transitions go first, each one, then the run is read again
          // (the read may hold a later state of the same node, which would hide them).
          if (local.length > 0) {
            dirty = true;
            continue;
          }
          for (const n of nodes) {
            const name = n.d.spec.name;
            if (n.d.status === 'RUNNING' && n.d.live > (streamed.get(name) ?? 0)) {
              const from = streamed.get(name) ?? 0;
              streamed.set(name, n.d.live);
              const parts = await this.ctx.db.partition(runPk(runId), outputPrefix(n.d.i, n.d.attempts + 1));
              const all = Buffer.concat(parts.map((p) => p.b!.B!));
              queue.push({
                type: 'output',
                runId,
                node: name,
                attempt: n.d.attempts + 1,
                offset: from,
                chunk: all.subarray(from, n.d.live),
              });
            }
            if ((versions.get(name) ?? 0) >= n.v) continue;
            await sendNode(n, runStatus(h.d.counts));
          }
          if (h.d.conclusion && !h.d.resuming) await sendSealed(h.d.conclusion);
        }
      } catch (e) {
        queue.close(e);
      } finally {
        stop();
      }
    })();
    return queue;
  }

  private async nodeWithAttempts(runId: string, d: NodeData) {
    const items: Item[] = await this.ctx.db.partition(runPk(runId), attemptsPrefix(d.i));
    const { attempts, outputs } = attemptsOf(items, d.i);
    return nodeState(d, attempts, outputs, {});
  }

  /** Waits for a wake-up or the poll interval. */
  private pause(setWake: (w: () => void) => void): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.pollMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      setWake(done);
    });
  }
}

/** What a watcher shows of a node: a change of anything else (a version bump by streamed output) is not a transition. */
function signature(d: NodeData): string {
  return `${d.status}|${d.attempts}|${d.claim?.id ?? ''}|${d.claim?.orphaned ?? ''}|${d.abr}`;
}
