import {
  Background,
  Controls,
  type Edge as FlowEdge,
  MarkerType,
  MiniMap,
  type NodeHandle,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  useStore,
} from '@xyflow/react';
import { type CSSProperties, type KeyboardEvent, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { Node } from '../../../../src/gen/adagio/v1/adagio_pb.js';
import { LOOK_LABEL, type NodeLook, nodeLook } from '../../api/format.js';
import type { RunShape } from '../../state/useLiveRun.js';
import { GraphNode, type GraphFlowNode } from './GraphNode.js';
import { NODE_HEIGHT, NODE_WIDTH, type Positions, useLayout } from './layout.js';
import { RoutedEdge } from './RoutedEdge.js';

// Defined once: React Flow warns (and re-mounts nodes) when nodeTypes changes identity.
const nodeTypes = { adagio: GraphNode };
const edgeTypes = { routed: RoutedEdge };
// Darker than React Flow's default grey: edges must stay visible at the zoom a big run opens at.
const EDGE_COLOUR = '#6b7280';
const ARROW = { type: MarkerType.ArrowClosed, width: 14, height: 14, color: EDGE_COLOUR };
const FIT = { maxZoom: 1, minZoom: 0.05 };
const MEASURED = { width: NODE_WIDTH, height: NODE_HEIGHT };
// Where edges attach: the middle of the left (in) and right (out) sides, as GraphNode's <Handle>s.
const HANDLES: NodeHandle[] = [
  { type: 'target', position: Position.Left, x: 0, y: NODE_HEIGHT / 2 - 0.5, width: 1, height: 1 },
  { type: 'source', position: Position.Right, x: NODE_WIDTH - 1, y: NODE_HEIGHT / 2 - 0.5, width: 1, height: 1 },
];
const PRO = { hideAttribution: true };
// Module-level so its identity never changes: a new function would re-render every minimap node.
const miniMapClass = (n: GraphFlowNode) => `mm look-${n.data.look}`;
// Above this many nodes the view opens on the graph's start at a readable zoom
// instead of fitting everything: only the visible part is rendered (the
// minimap shows the whole), which keeps a 1,000-node run smooth.
const BIG = 200;
const BIG_ZOOM = 0.7;
// How far out a big graph zooms: at 0.25 a screen holds some hundreds of nodes,
// which still render smoothly; zoomed out further a 10,000-node run would mount
// thousands at once (seconds of main thread). The overview beside it shows the whole.
const BIG_MIN_ZOOM = 0.25;
const BIG_FIT = { maxZoom: 1, minZoom: BIG_MIN_ZOOM };

interface Props {
  shape: RunShape;
  nodes: ReadonlyMap<string, Node>;
  selected: string | undefined;
  onSelect: (name: string | undefined) => void;
  /** Nodes of this look stand out, the others are dimmed (a status badge picked them). */
  highlight?: NodeLook | undefined;
}

interface Cached {
  state: Node | undefined;
  pos: { x: number; y: number } | undefined;
  selected: boolean;
  dimmed: boolean;
  flow: GraphFlowNode;
}

/** The run as a left-to-right DAG, coloured by node state, updated in place as events arrive. */
export function RunGraph(props: Props) {
  return (
    <ReactFlowProvider>
      <Graph {...props} />
    </ReactFlowProvider>
  );
}

function Graph(props: Props) {
  const layout = useLayout(props.shape);
  if (!layout)
    return (
      <div className="run-graph placeholder" data-layout="pending">
        Laying out {props.shape.names.length} nodes…
      </div>
    );
  return <LaidOutGraph {...props} layout={layout} />;
}

function LaidOutGraph({
  shape,
  nodes,
  selected,
  onSelect,
  highlight,
  layout,
}: Props & { layout: NonNullable<ReturnType<typeof useLayout>> }) {
  const { positions, routes, exact } = layout;
  const cache = useRef(new Map<string, Cached>());
  const cacheShape = useRef<RunShape | undefined>(undefined);
  if (cacheShape.current !== shape) {
    cache.current.clear();
    cacheShape.current = shape;
  }

  // O(nodes) per update, but only nodes that changed get a new object, so only
  // they re-render; no layout runs here (positions come from useLayout).
  const flowNodes = useMemo(
    () =>
      shape.names.map((name) => {
        const state = nodes.get(name);
        const pos = positions.get(name);
        const isSelected = name === selected;
        const dimmed = highlight !== undefined && (state ? nodeLook(state) : 'waiting') !== highlight;
        const hit = cache.current.get(name);
        if (hit && hit.state === state && hit.pos === pos && hit.selected === isSelected && hit.dimmed === dimmed)
          return hit.flow;
        const flow = toFlowNode(name, state, pos, isSelected, dimmed);
        cache.current.set(name, { state, pos, selected: isSelected, dimmed, flow });
        return flow;
      }),
    [shape, nodes, positions, selected, highlight],
  );

  // ELK's routes when it has laid the graph out; plain curves for the quick layout.
  const edges = useMemo<FlowEdge[]>(
    () =>
      shape.edges.map((e, i) => {
        const points = routes?.get(i);
        return points
          ? { id: `e${i}`, source: e.source, target: e.destination, type: 'routed', data: { points }, markerEnd: ARROW }
          : { id: `e${i}`, source: e.source, target: e.destination, markerEnd: ARROW };
      }),
    [shape, routes],
  );

  // A status badge picked a look: show the first node of it (once, not again as nodes change).
  const nodesNow = useRef(nodes);
  nodesNow.current = nodes;
  const [lookFocus, setLookFocus] = useState<string>();
  useEffect(() => {
    setLookFocus(
      highlight === undefined
        ? undefined
        : shape.names.find((n) => {
            const state = nodesNow.current.get(n);
            return (state ? nodeLook(state) : 'waiting') === highlight;
          }),
    );
  }, [highlight, shape]);

  const overview = useMemo(() => overviewStyle(positions), [positions]);
  const big = shape.names.length > BIG;
  const onNodeClick = useCallback((_: unknown, n: GraphFlowNode) => onSelect(n.id), [onSelect]);
  const onPaneClick = useCallback(() => onSelect(undefined), [onSelect]);
  // Nodes take keyboard focus (React Flow's wrapper, which holds the node id): Enter or Space opens
  // the focused node's panel as a click does. Listened for here, where the wrapper's keydown bubbles to.
  const onKeyDown = useCallback(
    (e: KeyboardEvent<HTMLDivElement>) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      const target = e.target as HTMLElement;
      const id = target.classList.contains('react-flow__node') ? target.dataset.id : undefined;
      if (id === undefined) return;
      e.preventDefault();
      onSelect(id);
    },
    [onSelect],
  );
  const startViewport = useMemo(() => (big ? openingViewport(shape, positions) : undefined), [big, shape, positions]);
  // Set once the user pans or zooms (event is null for the view's own moves): stop re-framing then.
  // onMove, not onMoveStart: a plain click on a node starts a pan gesture that never moves.
  const userMoved = useRef(false);
  const onMove = useCallback((event: unknown) => {
    if (event) userMoved.current = true;
  }, []);
  return (
    <div className="run-graph" data-layout={exact ? 'elk' : 'quick'}>
      <div className="graph-canvas" onKeyDown={onKeyDown}>
        <ReactFlow<GraphFlowNode>
          nodes={flowNodes}
          edges={edges}
          nodeTypes={nodeTypes}
          edgeTypes={edgeTypes}
          nodesDraggable={false}
          nodesConnectable={false}
          edgesFocusable={false}
          elementsSelectable
          onlyRenderVisibleElements={big}
          minZoom={big ? BIG_MIN_ZOOM : 0.05}
          maxZoom={2}
          fitView={!big}
          fitViewOptions={big ? BIG_FIT : FIT}
          defaultViewport={startViewport}
          onNodeClick={onNodeClick}
          onPaneClick={onPaneClick}
          onMove={onMove}
          proOptions={PRO}
        >
          <Background gap={24} />
          <Controls showInteractive={false} />
          <FitOnResize big={big} userMoved={userMoved} />
          <CentreOnSelected selected={selected} positions={positions} />
          <CentreOnSelected selected={lookFocus} positions={positions} />
        </ReactFlow>
      </div>
      {/* Beside the graph, not over it: a minimap in a corner hid the nodes under it. */}
      {shape.names.length > 20 && (
        <aside className="graph-overview" aria-label="overview" style={overview}>
          <MiniMap<GraphFlowNode> pannable zoomable nodeClassName={miniMapClass} />
        </aside>
      )}
    </div>
  );
}

/**
 * Brings the selected node into view when it is off screen (chosen by the
 * search box, a status badge, the timeline or a link), keeping the zoom
 * unless the graph is too small to read there.
 */
function CentreOnSelected({ selected, positions }: { selected: string | undefined; positions: Positions }) {
  const flow = useReactFlow();
  const domNode = useStore((s) => s.domNode);
  useEffect(() => {
    const pos = selected === undefined ? undefined : positions.get(selected);
    if (!pos || !domNode) return;
    const { x, y, zoom } = flow.getViewport();
    const { width, height } = domNode.getBoundingClientRect();
    const left = pos.x * zoom + x;
    const top = pos.y * zoom + y;
    const inView = left >= 0 && top >= 0 && left + NODE_WIDTH * zoom <= width && top + NODE_HEIGHT * zoom <= height;
    if (inView) return;
    void flow.setCenter(pos.x + NODE_WIDTH / 2, pos.y + NODE_HEIGHT / 2, { zoom: Math.max(zoom, 0.6), duration: 300 });
  }, [selected, positions, flow, domNode]);
  return null;
}

function toFlowNode(
  name: string,
  state: Node | undefined,
  pos: { x: number; y: number } | undefined,
  selected: boolean,
  dimmed: boolean,
): GraphFlowNode {
  return {
    id: name,
    type: 'adagio',
    ariaLabel: `${name}, ${LOOK_LABEL[state ? nodeLook(state) : 'waiting']}`,
    position: pos ?? { x: 0, y: 0 },
    width: NODE_WIDTH,
    height: NODE_HEIGHT,
    // Size and handles known up front: React Flow otherwise mounts every new or
    // changed node object (visible or not) just to measure it, which on a
    // 1,000-node run meant re-mounting every node that had a transition.
    measured: MEASURED,
    handles: HANDLES,
    selected,
    data: {
      name,
      runtime: state?.spec?.runtime ?? '',
      look: state ? nodeLook(state) : 'waiting',
      attempts: state?.attempts.length ?? 0,
      startedAt: state?.startedAt ?? '',
      finishedAt: state?.finishedAt ?? '',
      dimmed,
    },
  };
}

// The minimap's drawing area (React Flow's default size) and the least a node may shrink to in it.
const MINIMAP_WIDTH = 200;
const MINIMAP_HEIGHT = 150;
const MINIMAP_MIN_NODE_PX = 2;

/**
 * A stroke (in graph units) that keeps every node at least a couple of pixels
 * tall in the minimap: a 10,000-node graph scaled into it draws nodes under a
 * pixel, an empty-looking box.
 */
function overviewStyle(positions: Positions): CSSProperties | undefined {
  let minX = Number.POSITIVE_INFINITY;
  let minY = Number.POSITIVE_INFINITY;
  let maxX = Number.NEGATIVE_INFINITY;
  let maxY = Number.NEGATIVE_INFINITY;
  for (const p of positions.values()) {
    minX = Math.min(minX, p.x);
    minY = Math.min(minY, p.y);
    maxX = Math.max(maxX, p.x + NODE_WIDTH);
    maxY = Math.max(maxY, p.y + NODE_HEIGHT);
  }
  if (!Number.isFinite(minX)) return undefined;
  const scale = Math.min(MINIMAP_WIDTH / (maxX - minX), MINIMAP_HEIGHT / (maxY - minY));
  if (NODE_HEIGHT * scale >= MINIMAP_MIN_NODE_PX) return undefined;
  return { '--mm-stroke': String(MINIMAP_MIN_NODE_PX / scale - NODE_HEIGHT) } as CSSProperties;
}

/**
 * Where a big graph opens, at BIG_ZOOM: on its first source node (where the
 * run starts), at the left edge. Its column is centred on the tallest one, so
 * in a tree the root sits far below the bounding box's top-left corner, which
 * is empty canvas: the root is then brought to the upper part of the screen,
 * with its fan-out around it. A graph whose first source is at the top (a
 * grid) opens on its top-left corner as before.
 */
function openingViewport(shape: RunShape, positions: Positions): { x: number; y: number; zoom: number } {
  const hasUpstream = new Set(shape.edges.map((e) => e.destination));
  const first = shape.names.find((n) => !hasUpstream.has(n)) ?? shape.names[0];
  const pos = first === undefined ? undefined : positions.get(first);
  if (!pos) return { x: 0, y: 0, zoom: BIG_ZOOM };
  let minY = Number.POSITIVE_INFINITY;
  for (const p of positions.values()) minY = Math.min(minY, p.y);
  const margin = 40;
  // The canvas is not mounted yet: a third of the window's height is in it on any usual screen.
  const rootAt = Math.max(margin, window.innerHeight / 3);
  return {
    x: margin - pos.x * BIG_ZOOM,
    y: Math.min(margin - minY * BIG_ZOOM, rootAt - (pos.y + NODE_HEIGHT / 2) * BIG_ZOOM),
    zoom: BIG_ZOOM,
  };
}

/**
 * Small runs: re-frames the view when the graph area changes size, e.g. the
 * node panel opens, so the whole run stays in view until the user pans or
 * zooms themselves. (The layout itself never changes once painted.)
 */
function FitOnResize({
  big,
  userMoved,
}: {
  big: boolean;
  userMoved: { current: boolean };
}) {
  const flow = useReactFlow();
  const domNode = useStore((s) => s.domNode);
  useEffect(() => {
    if (big || !domNode) return;
    let frame = 0;
    let last = '';
    const observer = new ResizeObserver(([entry]) => {
      const size = entry ? `${Math.round(entry.contentRect.width)}x${Math.round(entry.contentRect.height)}` : '';
      if (size === last) return;
      const initial = last === '';
      last = size;
      if (initial || userMoved.current) return;
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(() => void flow.fitView(FIT));
    });
    observer.observe(domNode);
    return () => {
      observer.disconnect();
      cancelAnimationFrame(frame);
    };
  }, [big, domNode, flow, userMoved]);
  return null;
}
