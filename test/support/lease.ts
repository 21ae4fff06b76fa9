import type { Repository } from '../../src/protocol/index.js';

/**
 * Heartbeats a lease until the returned `stop()` is awaited. A test's "dead
 * agent" must be alive while it registers and claims, however loaded the
 * machine (CI once saw 300 ms pass between a grant and the claim), and fall
 * silent exactly when the test says so.
 */
export function heartbeat(
  repo: Pick<Repository, 'keepAlive'>,
  leaseId: string,
  everyMs: number,
): () => Promise<void> {
  let stopped = false;
  let wake: () => void = () => {};
  const beating = (async () => {
    while (!stopped) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, everyMs);
      });
      if (!stopped) await repo.keepAlive(leaseId);
    }
  })();
  return async () => {
    stopped = true;
    wake();
    await beating;
  };
}
