import { OverloadedError } from '../protocol/errors.js';
import type { Repository } from '../protocol/repository.js';

/** Default cap on queued (WAITING or READY) nodes: five maximum-size graphs. */
export const DEFAULT_MAX_QUEUED_NODES = 100_000;
/** How stale the backend's queued count may be before Start reads it again. */
const REFRESH_MS = 500;

/**
 * Admission control for Start: a run is refused with OverloadedError
 * (RESOURCE_EXHAUSTED / HTTP 429) when it would take the backend's queued
 * nodes (WAITING + READY: the repository's queuedNodes, else stats) past the
 * cap. They are read at most every REFRESH_MS; nodes this process admitted
 * since the last reading are added to it, so a back-to-back flood through one
 * API process stays under the cap, and several API processes overshoot by at
 * most what the others admit within one refresh.
 */
export class Admission {
  private queued = 0;
  private readAt = Number.NEGATIVE_INFINITY;
  private reading?: Promise<void>;

  constructor(
    private readonly repo: Repository,
    readonly maxQueuedNodes = DEFAULT_MAX_QUEUED_NODES,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Resolves when a run of `nodes` nodes may start (and counts them); throws OverloadedError otherwise. */
  async admit(nodes: number): Promise<void> {
    if (this.maxQueuedNodes <= 0) return;
    if (this.now() - this.readAt > REFRESH_MS) await this.refresh();
    if (this.queued + nodes > this.maxQueuedNodes)
      throw new OverloadedError(
        `too much queued work: ${this.queued} nodes are waiting or ready and this run adds ${nodes}; the limit is ${this.maxQueuedNodes} (-max-queued-nodes). Retry once runs finish.`,
      );
    this.queued += nodes;
  }

  private refresh(): Promise<void> {
    this.reading ??= this.queuedNow()
      .then((n) => {
        this.queued = n;
        this.readAt = this.now();
      })
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }

  /** WAITING plus READY nodes in the backend now: its own cheaper read where it has one. */
  private queuedNow(): Promise<number> {
    if (this.repo.queuedNodes) return this.repo.queuedNodes();
    return this.repo.stats().then((s) => s.nodeCounts.WAITING + s.nodeCounts.READY);
  }
}
