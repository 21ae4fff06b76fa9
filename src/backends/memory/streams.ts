import { conclusionOf, runStatus } from '../../model/index.js';
import { EventQueue, type NodeEvent, type SubscribeOptions, type WatchEvent } from '../../protocol/index.js';
import { type ClaimRecord, type NodeRecord, nodeSnapshot, type RunRecord, runSnapshot } from './state.js';

/**
 * The memory backend's streams (rule 8 and watch): READY and orphaned nodes
 * indexed per runtime, the subscribers and watchers, fed by the transitions'
 * hooks. Everything happens in one tick of the event loop, so a subscriber
 * registered and listed together misses nothing.
 */
export class MemoryStreams {
  private readonly ready = new Map<string, Set<NodeRecord>>();
  private readonly orphaned = new Map<string, Set<NodeRecord>>();
  private readonly subscribers = new Map<string, Set<EventQueue<NodeEvent>>>();
  private readonly watchers = new Map<string, Set<EventQueue<WatchEvent>>>();

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const queue = new EventQueue<NodeEvent>(options.signal);
    const runtimes = [...new Set(options.runtimes)];
    // Register first and list in the same tick: nothing can become READY in between.
    for (const rt of runtimes) setOf(this.subscribers, rt).add(queue);
    queue.onClose = () => {
      for (const rt of runtimes) this.subscribers.get(rt)?.delete(queue);
    };
    for (const rt of runtimes) {
      for (const n of this.ready.get(rt) ?? []) queue.push(event('NODE_READY', n));
      for (const n of this.orphaned.get(rt) ?? []) queue.push(event('NODE_ORPHANED', n));
    }
    return queue;
  }

  watch(run: RunRecord, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    const queue = new EventQueue<WatchEvent>(options.signal);
    queue.push({ type: 'snapshot', run: runSnapshot(run) });
    if (run.conclusion) queue.close();
    else {
      setOf(this.watchers, run.id).add(queue);
      queue.onClose = () => {
        const set = this.watchers.get(run.id);
        set?.delete(queue);
        // The last watcher gone: no entry left per run ever watched.
        if (set?.size === 0) this.watchers.delete(run.id);
      };
    }
    return queue;
  }

  close(): void {
    for (const set of this.subscribers.values()) for (const q of set) q.close();
    for (const set of this.watchers.values()) for (const q of set) q.close();
  }

  // ---- fed by the transitions' hooks

  statusChanged(node: NodeRecord, from: string | undefined): void {
    const rt = node.spec.runtime;
    if (from === 'READY') this.ready.get(rt)?.delete(node);
    // A node waiting out its retry delay is announced when the delay is over (retryDue).
    if (node.status === 'READY' && !node.readyAt) this.retryDue(node);
  }

  /** The node is claimable now: index it and tell the subscribers (rule 8). */
  retryDue(node: NodeRecord): void {
    const rt = node.spec.runtime;
    setOf(this.ready, rt).add(node);
    const ev = event('NODE_READY', node);
    for (const q of this.subscribers.get(rt) ?? []) q.push(ev);
  }

  claimReleased(node: NodeRecord, claim: ClaimRecord): void {
    if (claim.orphaned) this.orphaned.get(node.spec.runtime)?.delete(node);
  }

  outputAppended(node: NodeRecord, offset: number, chunk: Uint8Array): void {
    const watchers = this.watchers.get(node.run.id);
    if (!watchers || watchers.size === 0) return;
    const ev: WatchEvent = {
      type: 'output',
      runId: node.run.id,
      node: node.spec.name,
      attempt: node.attempts.length + 1,
      offset,
      chunk,
    };
    for (const q of watchers) q.push(ev);
  }

  nodeChanged(node: NodeRecord): void {
    if (node.claim?.orphaned && !this.orphaned.get(node.spec.runtime)?.has(node)) {
      setOf(this.orphaned, node.spec.runtime).add(node);
      const ev = event('NODE_ORPHANED', node);
      for (const q of this.subscribers.get(node.spec.runtime) ?? []) q.push(ev);
    }
    const watchers = this.watchers.get(node.run.id);
    if (!watchers || watchers.size === 0) return;
    const run = node.run;
    const done = run.counts.COMPLETED === run.order.length;
    const ev: WatchEvent = {
      type: 'node',
      runId: run.id,
      node: nodeSnapshot(node),
      runStatus: runStatus(run.counts),
      // The conclusion is set right after the last node completes; derive it here so the final event carries it.
      runConclusion: done ? (run.conclusion ?? conclusionOf(run)) : undefined,
    };
    for (const q of watchers) {
      q.push(ev);
      if (done) q.close();
    }
    if (done) this.watchers.delete(run.id);
  }
}

function event(type: NodeEvent['type'], node: NodeRecord): NodeEvent {
  return { type, runId: node.run.id, node: node.spec.name, runtime: node.spec.runtime };
}

function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let s = map.get(key);
  if (!s) {
    s = new Set();
    map.set(key, s);
  }
  return s;
}
