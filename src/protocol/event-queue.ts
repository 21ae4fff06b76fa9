/**
 * An unbounded push-to-pull queue that turns callbacks (a store's watch, a
 * NOTIFY, an in-process signal) into an async iterable that ends cleanly when
 * its AbortSignal aborts or the producer closes it. Backends use it for
 * subscribe() and watch().
 */
export class EventQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private waiter?: () => void;
  /** Producers waiting for the consumer to bring what is queued down to their `n` (see drained). */
  private lowWater: { n: number; resolve: () => void }[] = [];
  private closed = false;
  private failure?: unknown;
  private readonly onAbort = () => this.close();

  constructor(private readonly signal?: AbortSignal) {
    if (signal?.aborted) this.closed = true;
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.wake();
  }

  /** Ends the iteration after the queued items; with an error, the consumer's loop throws it. */
  close(error?: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.failure = error;
    this.signal?.removeEventListener('abort', this.onAbort);
    this.wake();
  }

  /** Items pushed and not yet taken by the consumer. */
  get queued(): number {
    return this.items.length - this.head;
  }

  /**
   * Resolves once the consumer has taken all but `n` of the queued items, or
   * the queue is closed: a producer that reads a large source page by page
   * reads its next page when the last one is nearly consumed, so a consumer
   * that stops taking (it has enough work) holds the producer back. Also
   * resolves when `signal` aborts.
   */
  drained(n: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || this.queued <= n || signal?.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      // A producer that stops (its own signal) stops waiting, and its waiter goes.
      const onAbort = () => {
        this.lowWater = this.lowWater.filter((w) => w !== waiter);
        resolve();
      };
      const waiter = {
        n,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.lowWater.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private checkLowWater(): void {
    if (this.lowWater.length === 0) return;
    const queued = this.queued;
    const waiting = this.lowWater;
    this.lowWater = waiting.filter((w) => !(this.closed || queued <= w.n));
    for (const w of waiting) if (this.closed || queued <= w.n) w.resolve();
  }

  /** Called once when the consumer stops (abort, break, or close); producers hook cleanup here. */
  onClose?: () => void;

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
    if (this.closed) this.checkLowWater();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    try {
      while (true) {
        if (this.signal?.aborted) return;
        if (this.head < this.items.length) {
          const item = this.items[this.head++]!;
          if (this.head > 1024 && this.head * 2 > this.items.length) {
            this.items = this.items.slice(this.head);
            this.head = 0;
          }
          this.checkLowWater();
          yield item;
          continue;
        }
        // An abort ends the stream at once (above); a producer's close drains what is queued first.
        if (this.closed) {
          if (this.failure !== undefined) throw this.failure;
          return;
        }
        await new Promise<void>((resolve) => {
          this.waiter = resolve;
        });
      }
    } finally {
      this.closed = true;
      this.checkLowWater();
      this.signal?.removeEventListener('abort', this.onAbort);
      this.onClose?.();
    }
  }
}
