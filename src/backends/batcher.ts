/**
 * The `alongside` of batchers on an add → start path (PostgreSQL's starts
 * and claims): a batch in flight of this many calls or fewer is light load.
 */
export const LIGHT_LOAD_CALLS = 2;
/** ...once it has been in flight this long, about a claim's round trip on an idle server. */
export const LIGHT_LOAD_AFTER_MS = 1;

interface Waiting<C, R> {
  call: C;
  resolve: (result: R) => void;
  reject: (e: unknown) => void;
}

export interface BatcherOptions<C> {
  /** Most calls in one batch. */
  maxCalls: number;
  /** Most total weight (e.g. rows written) in one batch; a single heavier call still goes alone. */
  maxWeight?: number;
  weight?: (call: C) => number;
  /**
   * Calls with a key in common never share a batch: the later one waits for
   * the next. A call may name several keys (e.g. every key it writes).
   */
  key?: (call: C) => string | string[];
  /**
   * A failed batch whose error says so is sent again one call at a time, so
   * one bad call (input the store refuses) fails alone rather than taking its
   * batch-mates with it. Only for batches that commit all or nothing.
   */
  isolate?: (e: unknown) => boolean;
  /**
   * Latency under light load: a call may go in a second batch alongside the
   * one in flight while that one holds at most this many calls. A lightly
   * loaded process (calls one at a time, as at a few hundred starts a second)
   * then never waits a whole round trip (and fsync) behind another call; a
   * busy one, whose batches are larger, still sends one batch at a time.
   * Default 0: one batch in flight, always.
   */
  alongside?: number;
  /**
   * ...and only once that batch has been in flight this long (ms): calls
   * that come in quick succession (a busy process) still share a batch; a
   * call that finds a slow one in flight (a commit's fsync, a loaded server) does not wait it out.
   */
  alongsideAfterMs?: number;
}

/**
 * A process's concurrent calls of one kind as one statement or transaction.
 * One batch is in flight at a time and the calls arriving meanwhile fill the
 * next one: an idle process pays no delay, a busy one sends one round trip
 * (one write, one server wake-up, one commit) for many calls. Where the
 * client or the server is CPU-bound, that is the cheapest way through
 * (npm run bench -- postgres: with more batches in flight they shrink and
 * statements become the bottleneck); only a light load (see `alongside`)
 * sends a second batch beside a small, slow one. Each call still gets exactly its own
 * answer; a failed batch fails each of its calls with the batch's error
 * (or, see `isolate`, is sent again call by call).
 */
export class Batcher<C, R> {
  private queue: Waiting<C, R>[] = [];
  /** The batches in flight: one, or two while the first is small (see `alongside`). */
  private readonly flying: { calls: Waiting<C, R>[]; at: number }[] = [];
  /** Keys of the calls in flight: a call sharing one waits for a later batch. */
  private readonly flyingKeys = new Map<string, number>();

  constructor(
    private readonly options: BatcherOptions<C>,
    /** Sends the calls as one statement; answers in the calls' order. */
    private readonly send: (calls: C[]) => Promise<R[]>,
  ) {}

  submit(call: C): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ call, resolve, reject });
      this.kick();
    });
  }

  /** Sends what is queued while a batch may go: none in flight, or a small one (`alongside`). */
  private kick(): void {
    const alongside = this.options.alongside ?? 0;
    while (this.queue.length > 0) {
      const inFlight = this.flying.length;
      if (
        inFlight > 1 ||
        (inFlight === 1 &&
          (this.flying[0]!.calls.length > alongside ||
            performance.now() - this.flying[0]!.at < (this.options.alongsideAfterMs ?? 0)))
      )
        return;
      const batch = this.take();
      if (batch.length === 0) return; // every call waits on a key in flight
      void this.fly(batch);
    }
  }

  private async fly(batch: Waiting<C, R>[]): Promise<void> {
    const flight = { calls: batch, at: this.options.alongsideAfterMs ? performance.now() : 0 };
    this.flying.push(flight);
    const keys = this.options.key ? batch.flatMap((w) => this.keysOf(w.call)) : [];
    for (const k of keys) this.flyingKeys.set(k, (this.flyingKeys.get(k) ?? 0) + 1);
    try {
      await this.sendBatch(batch);
    } finally {
      this.flying.splice(this.flying.indexOf(flight), 1);
      for (const k of keys) {
        const n = this.flyingKeys.get(k)! - 1;
        if (n === 0) this.flyingKeys.delete(k);
        else this.flyingKeys.set(k, n);
      }
      this.kick();
    }
  }

  private keysOf(call: C): string[] {
    const k = this.options.key?.(call);
    return k === undefined ? [] : typeof k === 'string' ? [k] : k;
  }

  private take(): Waiting<C, R>[] {
    const { maxCalls, maxWeight = Number.POSITIVE_INFINITY, weight } = this.options;
    const batch: Waiting<C, R>[] = [];
    const later: Waiting<C, R>[] = [];
    const keys = new Set<string>();
    let total = 0;
    for (const w of this.queue) {
      const ks = this.keysOf(w.call);
      const wt = weight?.(w.call) ?? 1;
      const full = batch.length >= maxCalls || (batch.length > 0 && total + wt > maxWeight);
      if (full || ks.some((x) => keys.has(x) || this.flyingKeys.has(x))) {
        later.push(w);
        continue;
      }
      for (const x of ks) keys.add(x);
      total += wt;
      batch.push(w);
    }
    this.queue = later;
    return batch;
  }

  private async sendBatch(batch: Waiting<C, R>[]): Promise<void> {
    try {
      const results = await this.send(batch.map((w) => w.call));
      for (const [i, w] of batch.entries()) w.resolve(results[i] as R);
    } catch (e) {
      if (batch.length > 1 && this.options.isolate?.(e))
        await Promise.all(batch.map((w) => this.sendBatch([w])));
      else for (const w of batch) w.reject(e);
    }
  }
}
