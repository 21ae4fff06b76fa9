/**
 * Exponential backoff with jitter for transient store errors: retries spread
 * out instead of hammering a store that is already struggling.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export class Backoff {
  private failures = 0;
  private readonly initialMs: number;
  private readonly maxMs: number;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 100;
    this.maxMs = options.maxMs ?? 5000;
  }

  /** The next delay: doubling from initialMs up to maxMs, each drawn from its upper half. */
  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    return base / 2 + Math.random() * (base / 2);
  }

  reset(): void {
    this.failures = 0;
  }
}
