import type { NodeEvent } from './repository.js';

/** One node: a second event about it adds nothing to a claimer (claims decide ownership). */
const nodeKey = (e: NodeEvent): string => `${e.runId}\u0000${e.node}`;

/**
 * READY and orphaned nodes waiting for a claimer (the agent pool's free
 * slots, the agent API's long-polls), first in first out, at most one event
 * per node. A backlog arrives as one event per node, so this may hold
 * hundreds of thousands: adding and taking are O(1). (A Map taken from its
 * front is not: V8 leaves a hole per deleted entry that every later
 * `entries().next()` walks past until the table is rebuilt; 5 µs a take at
 * 20,000 entries, 30 µs at 100,000.)
 */
export class PendingEvents {
  private readonly byNode = new Map<string, NodeEvent>();
  /** Keys in arrival order from `head`; each key in byNode appears once at or after head. */
  private order: string[] = [];
  private head = 0;
  /** Whoever waits for room (see room()). */
  private roomWaiters: (() => void)[] = [];

  /**
   * @param bound how many events are enough: past it full() is true, and a
   * producer waits on room() (a subscription held back while its consumer
   * has work enough, so a backlog stays in the store).
   */
  constructor(private readonly bound = Number.POSITIVE_INFINITY) {}

  get size(): number {
    return this.byNode.size;
  }

  /** Queues the event last, unless one about its node waits already. */
  add(event: NodeEvent): void {
    const key = nodeKey(event);
    if (this.byNode.has(key)) return;
    this.order.push(key);
    this.byNode.set(key, event);
  }

  /** Queues the event last, or in place of the one about its node where that one stands. */
  set(event: NodeEvent): void {
    const key = nodeKey(event);
    if (!this.byNode.has(key)) this.order.push(key);
    this.byNode.set(key, event);
  }

  /** The oldest event, removed; undefined when none waits. */
  take(): NodeEvent | undefined {
    if (this.head >= this.order.length) return undefined;
    const key = this.order[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
    const event = this.byNode.get(key)!;
    this.byNode.delete(key);
    if (this.roomWaiters.length > 0 && this.byNode.size <= this.bound / 2) this.makeRoom();
    return event;
  }

  /** At least `bound` events wait. */
  full(): boolean {
    return this.byNode.size >= this.bound;
  }

  /** Resolves once takes have brought the events waiting down to half the bound, or on clear(). */
  room(): Promise<void> {
    if (!this.full()) return Promise.resolve();
    return new Promise((resolve) => this.roomWaiters.push(resolve));
  }

  /** Drops every event; whoever waits for room goes on. */
  clear(): void {
    this.byNode.clear();
    this.order = [];
    this.head = 0;
    this.makeRoom();
  }

  private makeRoom(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }
}
