/**
 * An AbortController made only when someone reads its signal. Creating one
 * costs more than a no-op node's whole claim-run-finish in the memory backend,
 * and most runtimes never look at `ctx.signal`, so the agent makes the real
 * controller on first read. Aborting before the first read is remembered: the
 * signal then starts out aborted with the same reason.
 */
export class LazyAbortController {
  private controller?: AbortController;
  private abortedWith?: { reason: unknown };

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.abortedWith) this.controller.abort(this.abortedWith.reason);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.abortedWith !== undefined;
  }

  abort(reason?: unknown): void {
    if (this.abortedWith) return;
    this.abortedWith = { reason };
    this.controller?.abort(reason);
  }
}
