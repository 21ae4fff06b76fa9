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

// Above this, ELK's layered layout takes too long to be worth the wait; the quick layout stays.
const ELK_MAX_NODES = 5000;
// A layout that has not finished by then is abandoned (the worker is replaced).
const ELK_TIMEOUT_MS = 60_000;

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

/** The layout of a run: the quick one at once, ELK's when the worker is done. */
export function useLayout(shape: RunShape | undefined): Layout & { exact: boolean } {
  const quick = useMemo<Layout>(() => ({ positions: shape ? quickLayout(shape) : new Map() }), [shape]);
  const [elk, setElk] = useState<{ shape: RunShape; layout: Layout } | undefined>();
  useEffect(() => {
    if (!shape || shape.names.length > ELK_MAX_NODES || typeof Worker === 'undefined') return;
    let current = true;
    elkLayout(shape).then(
      (layout) => current && setElk({ shape, layout }),
      () => {
        // The quick layout stays: a readable picture beats an error here.
        cache.delete(shape);
      },
    );
    return () => {
      current = false;
    };
  }, [shape]);
  if (shape && elk?.shape === shape) return { ...elk.layout, exact: true };
  return { ...quick, exact: false };
}
