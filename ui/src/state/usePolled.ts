import { useCallback, useEffect, useRef, useState } from 'react';
import { errorMessage, isAbort, isAuthError } from '../api/client.js';
import { onTokenChange } from '../api/token.js';

export interface Polled<T> {
  data: T | undefined;
  error: string | undefined;
  /** True when the last failure was a missing/wrong token. */
  authError: boolean;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads `fetcher` now, whenever `key` changes or the token changes, and every
 * `intervalMs` (0: never) while the tab is visible. Older responses never
 * overwrite newer ones: each load aborts the previous one.
 */
export function usePolled<T>(key: string, fetcher: (signal: AbortSignal) => Promise<T>, intervalMs = 0): Polled<T> {
  const [state, setState] = useState<Omit<Polled<T>, 'reload'>>({
    data: undefined,
    error: undefined,
    authError: false,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const fetcherRef = useRef(fetcher);
  fetcherRef.current = fetcher;
  const reload = useCallback(() => setTick((t) => t + 1), []);

  useEffect(() => onTokenChange(reload), [reload]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: `key` and `tick` are the triggers.
  useEffect(() => {
    const ctrl = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    fetcherRef.current(ctrl.signal).then(
      (data) => {
        if (!ctrl.signal.aborted) setState({ data, error: undefined, authError: false, loading: false });
      },
      (e: unknown) => {
        if (ctrl.signal.aborted || isAbort(e)) return;
        setState((s) => ({ ...s, error: errorMessage(e), authError: isAuthError(e), loading: false }));
      },
    );
    return () => ctrl.abort();
  }, [key, tick]);

  useEffect(() => {
    if (intervalMs <= 0) return;
    const id = window.setInterval(() => {
      if (document.visibilityState === 'visible') reload();
    }, intervalMs);
    return () => window.clearInterval(id);
  }, [intervalMs, reload]);

  return { ...state, reload };
}
