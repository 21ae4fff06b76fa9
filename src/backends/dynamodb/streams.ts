import { checkRunId, runStatus } from '../../model/index.js';
import { EventQueue, type NodeEvent, type SubscribeOptions, type WatchEvent } from '../../protocol/index.js';
import type { DynamoContext } from './context.js';
import { type Item, S } from './db.js';
import { attemptsOf, decodeNode, decodeRun, type NodeData, nodeState, outputPrefix, runPk } from './items.js';
import { inspectRun } from './reads.js';
import { READY_INDEX } from './table.js';

/**
 * Subscribe (rule 8) and watch. Catch-up and wake-ups both come from the
 * sparse `ready` index (READY nodes and orphaned claims by runtime): a
 * subscriber queries it at once and again every poll interval, and
 * immediately when this process made a node of its runtimes READY. An entry
 * is delivered again only when its node's version changed, so a node READY
 * again later (a retry) is delivered again, and one never seen is never
 * missed: the index holds it until it is claimed.
 */
export class Streams {
  constructor(
    private readonly ctx: DynamoContext,
    private readonly pollMs: number,
  ) {}

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const queue = new EventQueue<NodeEvent>(options.signal);
    const runtimes = [...new Set(options.runtimes)];
    const delivered = new Map<string, string>();
    let wake: (() => void) | undefined;
    let dirty = false;
    const onReady = (rt: string) => {
      if (!runtimes.includes(rt)) return;
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
        dirty = false;
        try {
          for (const rt of runtimes) {
            const items = await this.ctx.db.queryAll({
              IndexName: READY_INDEX,
              KeyConditionExpression: 'rt = :rt',
              ExpressionAttributeValues: { ':rt': S(rt) },
            });
            const present = new Set<string>();
            for (const item of items) {
              const rk = item.rk!.S!;
              const key = `${rt}\u0000${rk}`;
              present.add(key);
              const stamp = `${item.v!.N}${item.ev!.S}`;
              if (delivered.get(key) === stamp) continue;
              delivered.set(key, stamp);
              const at = rk.indexOf('#');
              queue.push({
                type: item.ev!.S === 'O' ? 'NODE_ORPHANED' : 'NODE_READY',
                runId: rk.slice(0, at),
                node: rk.slice(at + 1),
                runtime: rt,
              });
            }
            for (const k of delivered.keys())
              if (k.startsWith(`${rt}\u0000`) && !present.has(k)) delivered.delete(k);
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

  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    checkRunId(runId);
    const queue = new EventQueue<WatchEvent>(options.signal);
    let wake: (() => void) | undefined;
    let dirty = false;
    const onRun = (id: string) => {
      if (id !== runId) return;
      dirty = true;
      wake?.();
    };
    this.ctx.bus.on('run', onRun);
    this.ctx.bus.once('close', () => queue.close());
    queue.onClose = () => {
      this.ctx.bus.off('run', onRun);
      wake?.();
    };
    const started = inspectRun(this.ctx, runId);
    void (async () => {
      try {
        const run = await started;
        queue.push({ type: 'snapshot', run });
        if (run.conclusion) return queue.close();
        // What was sent: each node's version, and how much of its running attempt's output.
        const versions = new Map<string, number>();
        const streamed = new Map<string, number>();
        for (const item of await this.ctx.db.partition(runPk(runId), 'n#')) {
          const n = decodeNode(item);
          versions.set(n.d.spec.name, n.v);
          streamed.set(n.d.spec.name, n.d.live);
        }
        let lastSent: NodeData | undefined;
        while (!queue.isClosed) {
          if (!dirty) await this.pause((w) => (wake = w));
          dirty = false;
          if (queue.isClosed) return;
          // The header first: when it says completed, the nodes read after it hold every change.
          const header = await this.ctx.db.get({ pk: runPk(runId), sk: '#' });
          if (!header) return queue.close();
          const h = decodeRun(header);
          const changed: NodeData[] = [];
          for (const item of await this.ctx.db.partition(runPk(runId), 'n#')) {
            const n = decodeNode(item);
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
            if (versions.get(name) === n.v) continue;
            versions.set(name, n.v);
            if (n.d.status !== 'RUNNING') streamed.set(name, 0);
            changed.push(n.d);
          }
          changed.sort((a, b) => a.i - b.i);
          for (const [k, d] of changed.entries()) {
            const items: Item[] = await this.ctx.db.partition(
              runPk(runId),
              `a#${String(d.i).padStart(6, '0')}#`,
            );
            const { attempts, outputs } = attemptsOf(items, d.i);
            const last = k === changed.length - 1;
            queue.push({
              type: 'node',
              runId,
              node: nodeState(d, attempts, outputs, {}),
              runStatus: last
                ? runStatus(h.d.counts)
                : runStatus(h.d.counts) === 'COMPLETED'
                  ? 'RUNNING'
                  : runStatus(h.d.counts),
              runConclusion: last && !h.d.resuming ? h.d.conclusion : undefined,
            });
          }
          if (changed.length > 0) lastSent = changed[changed.length - 1];
          else if (h.d.conclusion && !h.d.resuming && lastSent) {
            // The run completed between two reads: the final event carries its conclusion (a repeat is allowed).
            const items: Item[] = await this.ctx.db.partition(
              runPk(runId),
              `a#${String(lastSent.i).padStart(6, '0')}#`,
            );
            const { attempts, outputs } = attemptsOf(items, lastSent.i);
            queue.push({
              type: 'node',
              runId,
              node: nodeState(lastSent, attempts, outputs, {}),
              runStatus: 'COMPLETED',
              runConclusion: h.d.conclusion,
            });
          }
          if (h.d.conclusion && !h.d.resuming) return queue.close();
        }
      } catch (e) {
        queue.close(e);
      } finally {
        this.ctx.bus.off('run', onRun);
      }
    })();
    return queue;
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
