/** setTimeout fires at once for delays past 2^31-1 ms; longer waits are capped there (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A delay setTimeout keeps: `ms` capped at MAX_TIMER_MS. */
export function timerDelay(ms: number): number {
  return Math.min(ms, MAX_TIMER_MS);
}

/** Resolves after `ms` (capped at MAX_TIMER_MS), or early (to false) when the signal aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, timerDelay(ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The message of an abort reason, for outputs and logs. */
export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r.message;
  return r === undefined ? 'aborted' : String(r);
}
