import { useEffect, useMemo, useState } from 'react';
import type { RunShape } from '../../state/useLiveRun.js';
import type { LayoutReply, LayoutRequest } from './layout-protocol.js';

export const NODE_WIDTH = 200;
export const NODE_HEIGHT = 54;

export type Positions = ReadonlyMap<string, { x: number; y: number }>;

export interface Layout {
  positions: Positions;
  /** ELK's edge routes by edge index (flattened points); absent for the quick layout. */
  routes?: ReadonlyMap<number, number[]>;
}

// Up to this many nodes the graph waits for ELK's layout (well under a second
// on a small graph) before its first paint; above it, the quick layout is the
// layout: ELK takes seconds there, and a layout that arrives mid-run would move
// every node the user is looking at. Either way a run has one layout from
// first paint to the end.
export const ELK_MAX_NODES = 300;
// ELK not done by then: the quick layout is used, and ELK's late answer ignored.
const ELK_TIMEOUT_MS = 8_000;

/**
 * A layered left-to-right placement computed in O(nodes + edges) on the main
 * thread: column = longest path from a source, rows in graph order, columns
 * centred. Shown at once while ELK works, and kept if ELK fails.
 */
export function quickLayout(shape: RunShape): Positions {
  const rank = new Map<string, number>(shape.names.map((n) => [n, 0]));
  const out = new Map<string, string[]>();
  const indegree = new Map<string, number>(shape.names.map((n) => [n, 0]));
  for (const e of shape.edges) {
    const next = out.get(e.source);
    if (next) next.push(e.destination);
    else out.set(e.source, [e.destination]);
    indegree.set(e.destination, (indegree.get(e.destination) ?? 0) + 1);
  }
  const queue = shape.names.filter((n) => indegree.get(n) === 0);
  for (let i = 0; i < queue.length; i++) {
    const n = queue[i]!;
    for (const d of out.get(n) ?? []) {
      rank.set(d, Math.max(rank.get(d) ?? 0, (rank.get(n) ?? 0) + 1));
      const left = (indegree.get(d) ?? 1) - 1;
      indegree.set(d, left);
      if (left === 0) queue.push(d);
    }
  }
  const columns: string[][] = [];
  for (const n of shape.names) {
    const r = rank.get(n) ?? 0;
    (columns[r] ??= []).push(n);
  }
  const tallest = Math.max(1, ...columns.map((c) => c?.length ?? 0));
  const positions = new Map<string, { x: number; y: number }>();
  columns.forEach((col, r) => {
    const offset = ((tallest - col.length) * (NODE_HEIGHT + 18)) / 2;
    col.forEach((n, i) => {
      positions.set(n, { x: r * (NODE_WIDTH + 70), y: offset + i * (NODE_HEIGHT + 18) });
    });
  });
  return positions;
}

let worker: Worker | undefined;
let seq = 0;
const waiting = new Map<number, (reply: LayoutReply) => void>();
// A run's shape never changes, so its layout is computed once per page load.
const cache = new WeakMap<RunShape, Promise<Layout>>();

function layoutWorker(): Worker {
  if (!worker) {
    worker = new Worker(new URL('./layout.worker.ts', import.meta.url), { type: 'module' });
    worker.onmessage = (e: MessageEvent<LayoutReply>) => {
      waiting.get(e.data.seq)?.(e.data);
      waiting.delete(e.data.seq);
    };
    worker.onerror = () => resetWorker('the layout worker failed');
  }
  return worker;
}

function resetWorker(reason: string): void {
  worker?.terminate();
  worker = undefined;
  for (const [s, resolve] of waiting) resolve({ seq: s, error: reason });
  waiting.clear();
}

function elkLayout(shape: RunShape): Promise<Layout> {
  let p = cache.get(shape);
  if (p) return p;
  p = new Promise<Layout>((resolve, reject) => {
    const req: LayoutRequest = {
      seq: ++seq,
      ids: shape.names,
      edges: shape.edges.map((e) => [e.source, e.destination]),
      width: NODE_WIDTH,
      height: NODE_HEIGHT,
    };
    const timer = setTimeout(() => resetWorker('layout timed out'), ELK_TIMEOUT_MS);
    waiting.set(req.seq, (reply) => {
      clearTimeout(timer);
      if (reply.error !== undefined) reject(new Error(reply.error));
      else
        resolve({
          positions: new Map(reply.positions.map(([id, x, y]) => [id, { x, y }])),
          routes: new Map(reply.routes),
        });
    });
    layoutWorker().postMessage(req);
  });
  cache.set(shape, p);
  return p;
}

/**
 * The layout of a run, decided once: ELK's for a small graph (undefined while
 * it is computed, so nothing is painted in a place it will leave), the quick
 * one for a big graph, or when ELK fails or is too slow.
 */
export function useLayout(shape: RunShape | undefined): (Layout & { exact: boolean }) | undefined {
  const useElk = shape !== undefined && shape.names.length <= ELK_MAX_NODES && typeof Worker !== 'undefined';
  const quick = useMemo<Layout | undefined>(
    () => (shape && !useElk ? { positions: quickLayout(shape) } : undefined),
    [shape, useElk],
  );
  const [decided, setDecided] = useState<{ shape: RunShape; layout: Layout; exact: boolean } | undefined>();
  useEffect(() => {
    if (!shape || !useElk) return;
    let current = true;
    const fallback = () =>
      current &&
      setDecided((d) => (d?.shape === shape ? d : { shape, layout: { positions: quickLayout(shape) }, exact: false }));
    const timer = setTimeout(fallback, ELK_TIMEOUT_MS);
    elkLayout(shape).then(
      (layout) => {
        clearTimeout(timer);
        if (current) setDecided((d) => (d?.shape === shape ? d : { shape, layout, exact: true }));
      },
      () => {
        clearTimeout(timer);
        cache.delete(shape);
        // A readable picture beats an error here.
        fallback();
      },
    );
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [shape, useElk]);
  if (quick) return { ...quick, exact: false };
  if (shape && decided?.shape === shape) return { ...decided.layout, exact: decided.exact };
  return undefined;
}
