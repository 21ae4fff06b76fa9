interface Waiting<C, R> {
  call: C;
  weight: number;
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
   * While busy (calls arrived during the batch in flight, or the last batch,
   * of several calls, ended under RECENT_MS ago), how long the next batch
   * waits for more calls before it goes, unless the calls queued already
   * fill a batch (maxCalls, or maxWeight). After idle the first call goes
   * at once. Where a store's cost is per item of a transaction and a batch
   * shares some items (a run's header, a counter shard), larger batches cost
   * less per call; the window bounds what a call waits for that.
   */
  busyWindowMs?: number;
}

/**
 * Thrown by a batch that did not commit (a failed condition cancels an
 * all-or-nothing transaction): with `isolate: (e) => e instanceof
 * BatchNotCommitted`, each of its calls goes again alone.
 */
export class BatchNotCommitted extends Error {}

/**
 * A process's concurrent calls of one kind as one statement or transaction.
 * One batch is in flight at a time and the calls arriving meanwhile fill the
 * next one: an idle process pays no delay, a busy one sends one round trip
 * (one write, one server wake-up, one commit) for many calls. Where the
 * client or the server is CPU-bound, that is the cheapest way through
 * (npm run bench -- postgres: with more batches in flight they shrink and
 * statements become the bottleneck). Each call still gets exactly its own
 * answer; a failed batch fails each of its calls with the batch's error
 * (or, see `isolate`, is sent again call by call). Where a store's cost is
 * per item and a batch shares items, a busy batcher may also wait a short
 * window for more calls (`busyWindowMs`).
 */
export class Batcher<C, R> {
  private queue: Waiting<C, R>[] = [];
  private sending = false;
  /** Size and end of the last batch sent, and what ends a wait for more calls early (busyWindowMs). */
  private lastSize = 0;
  private lastEnd = 0;
  private wake?: () => void;
  private queuedWeight = 0;

  constructor(
    private readonly options: BatcherOptions<C>,
    /** Sends the calls as one statement; answers in the calls' order. */
    private readonly send: (calls: C[]) => Promise<R[]>,
  ) {}

  submit(call: C): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const weight = this.options.weight?.(call) ?? 1;
      this.queue.push({ call, weight, resolve, reject });
      this.queuedWeight += weight;
      if (!this.sending) void this.drain();
      else if (this.full()) this.wake?.();
    });
  }

  /** Enough calls queued, by count or by weight, for a whole batch: no point waiting for more. */
  private full(): boolean {
    const { maxCalls, maxWeight = Number.POSITIVE_INFINITY } = this.options;
    return this.queue.length >= maxCalls || this.queuedWeight >= maxWeight;
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      const window = this.options.busyWindowMs ?? 0;
      // Busy: a batch of several calls ended moments ago (the next calls are on their way), or this loop goes on
      // (calls came, or were left over, while the last batch was in flight).
      let busy = this.lastSize > 1 && performance.now() - this.lastEnd < RECENT_MS;
      for (; this.queue.length > 0; busy = true) {
        if (busy && window > 0 && !this.full()) await this.gather(window);
        const batch = this.take();
        this.lastSize = batch.length;
        await this.sendBatch(batch);
        this.lastEnd = performance.now();
      }
    } finally {
      this.sending = false;
    }
  }

  /** Waits `ms` for more calls, or until they fill a batch. */
  private gather(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private take(): Waiting<C, R>[] {
    const { maxCalls, maxWeight = Number.POSITIVE_INFINITY, key } = this.options;
    const batch: Waiting<C, R>[] = [];
    const later: Waiting<C, R>[] = [];
    const keys = new Set<string>();
    let total = 0;
    for (const w of this.queue) {
      const k = key?.(w.call);
      const ks = k === undefined ? [] : typeof k === 'string' ? [k] : k;
      const wt = w.weight;
      const full = batch.length >= maxCalls || (batch.length > 0 && total + wt > maxWeight);
      if (full || ks.some((x) => keys.has(x))) {
        later.push(w);
        continue;
      }
      for (const x of ks) keys.add(x);
      total += wt;
      batch.push(w);
    }
    this.queue = later;
    this.queuedWeight = later.reduce((n, w) => n + w.weight, 0);
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

/** How lately a batch of several calls must have ended for the batcher to count as busy (busyWindowMs). */
const RECENT_MS = 20;
