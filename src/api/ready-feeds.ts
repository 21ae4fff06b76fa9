import type { Logger } from '../log.js';
import { PendingEvents } from '../protocol/pending-events.js';
import type { NodeEvent, Repository } from '../protocol/repository.js';
import { sleep } from '../runtimes/sleep.js';

/** A feed nobody has waited on for this long ends its subscription. */
const IDLE_MS = 30_000;

/** Nodes a feed holds for its long-polls at most; past that its subscription waits. */
const MAX_PENDING = 1_024;

/**
 * The API process's claim-next callers share one subscription per set of
 * runtimes, and each READY or orphaned node is handed to one waiting caller
 * at a time. Without it every long-poll opened its own subscription (a list
 * of every READY node and a watch, on etcd) and every caller raced for the
 * same first node: per claimed node, work grew with the number of agents.
 *
 * Events are hints, as everywhere (rule 8): the caller still claims, and a
 * node taken meanwhile by someone else is simply skipped. A caller that could
 * not try its node (the store failed) gives it back, so it is not lost.
 */
export class ReadyFeeds {
  private readonly feeds = new Map<string, Feed>();
  private closed = false;

  constructor(
    private readonly repo: Repository,
    private readonly logger: Logger,
  ) {}

  /** The next node for one of the runtimes, or undefined once the signal aborts. */
  next(runtimes: string[], signal: AbortSignal): Promise<NodeEvent | undefined> {
    const key = [...new Set(runtimes)].sort().join('\u0000');
    let feed = this.feeds.get(key);
    if (!feed || feed.ended) {
      feed = new Feed(this.repo, [...new Set(runtimes)], this.logger, () => {
        if (this.feeds.get(key) === feed) this.feeds.delete(key);
      });
      this.feeds.set(key, feed);
      if (this.closed) feed.end();
    }
    return feed.next(signal);
  }

  /** Hands a node back that was taken but could not be tried. */
  giveBack(runtimes: string[], event: NodeEvent): void {
    this.feeds.get([...new Set(runtimes)].sort().join('\u0000'))?.offer(event);
  }

  close(): void {
    this.closed = true;
    for (const f of this.feeds.values()) f.end();
    this.feeds.clear();
  }
}

class Feed {
  private readonly pending = new PendingEvents(MAX_PENDING);
  private readonly waiters = new Set<(e: NodeEvent | undefined) => void>();
  private readonly stop = new AbortController();
  private idleTimer?: NodeJS.Timeout;
  ended = false;

  constructor(
    private readonly repo: Repository,
    private readonly runtimes: string[],
    private readonly logger: Logger,
    private readonly onEnd: () => void,
  ) {
    void this.run();
  }

  next(signal: AbortSignal): Promise<NodeEvent | undefined> {
    clearTimeout(this.idleTimer);
    const first = this.pending.take();
    if (first || signal.aborted || this.ended) {
      if (this.waiters.size === 0) this.armIdle();
      return Promise.resolve(first);
    }
    return new Promise((resolve) => {
      const waiter = (e: NodeEvent | undefined) => {
        signal.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        if (this.waiters.size === 0) this.armIdle();
        resolve(e);
      };
      const onAbort = () => waiter(undefined);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  offer(event: NodeEvent): void {
    const waiter = this.waiters.values().next();
    if (!waiter.done) waiter.value(event);
    else this.pending.set(event);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.idleTimer);
    this.stop.abort();
    for (const w of [...this.waiters]) w(undefined);
    this.pending.clear();
    this.onEnd();
  }

  private armIdle(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.end(), IDLE_MS);
    this.idleTimer.unref();
  }

  /** Subscribes, and again after a failure: a new subscription replays every READY node (rule 8). */
  private async run(): Promise<void> {
    let delay = 50;
    while (!this.stop.signal.aborted) {
      try {
        for await (const event of this.repo.subscribe({
          runtimes: this.runtimes,
          signal: this.stop.signal,
        })) {
          delay = 50;
          this.offer(event);
          // Enough waiting for the long-polls: the store keeps the rest (a paged catch-up reads on later).
          while (this.pending.full() && !this.stop.signal.aborted) await this.pending.room();
        }
      } catch (e) {
        if (this.stop.signal.aborted) return;
        this.logger.warn('claim-next subscription failed; subscribing again', {
          runtimes: this.runtimes,
          error: (e as Error).message,
        });
      }
      await sleep(delay, this.stop.signal);
      delay = Math.min(delay * 2, 2_000);
    }
  }
}
