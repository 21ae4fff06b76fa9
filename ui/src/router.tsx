import { type MouseEvent, type ReactNode, useEffect, useSyncExternalStore } from 'react';

// A small history-API router: six pages do not need a routing library.
// Paths: /  /runs  /runs/:id  /start  /workflows  /workflows/:name  (adagiod serves index.html for each).

const listeners = new Set<() => void>();

function subscribe(l: () => void): () => void {
  listeners.add(l);
  window.addEventListener('popstate', l);
  return () => {
    listeners.delete(l);
    window.removeEventListener('popstate', l);
  };
}

const snapshot = () => window.location.pathname + window.location.search;

/** The current path and query; re-renders on navigation. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const href = useSyncExternalStore(subscribe, snapshot);
  const q = href.indexOf('?');
  return {
    path: q < 0 ? href : href.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : href.slice(q)),
  };
}

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === snapshot()) return;
  if (options.replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  for (const l of listeners) l();
}

/** An anchor that navigates without a reload (and still opens in a new tab on ctrl/middle click). */
export function Link(props: { to: string; className?: string; children: ReactNode; title?: string }) {
  const onClick = (e: MouseEvent<HTMLAnchorElement>) => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.to);
  };
  return (
    <a href={props.to} className={props.className} title={props.title} onClick={onClick}>
      {props.children}
    </a>
  );
}

/** Sets document.title while the page is shown. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Adagio` : 'Adagio';
  }, [title]);
}

export function workflowPath(name: string): string {
  return `/workflows/${encodeURIComponent(name)}`;
}

export function schedulePath(name: string): string {
  return `/schedules/${encodeURIComponent(name)}`;
}

export function runPath(id: string): string {
  return `/runs/${encodeURIComponent(id)}`;
}
