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

  /** Called once when the consumer stops (abort, break, or close); producers hook cleanup here. */
  onClose?: () => void;

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
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
      this.signal?.removeEventListener('abort', this.onAbort);
      this.onClose?.();
    }
  }
}
