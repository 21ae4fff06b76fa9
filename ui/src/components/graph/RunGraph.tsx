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
import { useCallback, useEffect, useMemo, useRef } from 'react';
import type { Node } from '../../../../src/gen/adagio/v1/adagio_pb.js';
import { nodeLook } from '../../api/format.js';
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

interface Props {
  shape: RunShape;
  nodes: ReadonlyMap<string, Node>;
  selected: string | undefined;
  onSelect: (name: string | undefined) => void;
}

interface Cached {
  state: Node | undefined;
  pos: { x: number; y: number } | undefined;
  selected: boolean;
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

function Graph({ shape, nodes, selected, onSelect }: Props) {
  const { positions, routes, exact } = useLayout(shape);
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
        const hit = cache.current.get(name);
        if (hit && hit.state === state && hit.pos === pos && hit.selected === isSelected) return hit.flow;
        const flow = toFlowNode(name, state, pos, isSelected);
        cache.current.set(name, { state, pos, selected: isSelected, flow });
        return flow;
      }),
    [shape, nodes, positions, selected],
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

  const big = shape.names.length > BIG;
  const onNodeClick = useCallback((_: unknown, n: GraphFlowNode) => onSelect(n.id), [onSelect]);
  const onPaneClick = useCallback(() => onSelect(undefined), [onSelect]);
  // Set once the user pans or zooms (event is null for the view's own moves): stop re-framing then.
  // onMove, not onMoveStart: a plain click on a node starts a pan gesture that never moves.
  const userMoved = useRef(false);
  const onMove = useCallback((event: unknown) => {
    if (event) userMoved.current = true;
  }, []);
  return (
    <div className="run-graph" data-layout={exact ? 'elk' : 'quick'}>
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
        minZoom={0.05}
        maxZoom={2}
        fitView={!big}
        fitViewOptions={FIT}
        defaultViewport={big ? cornerViewport(positions) : undefined}
        onNodeClick={onNodeClick}
        onPaneClick={onPaneClick}
        onMove={onMove}
        proOptions={PRO}
      >
        <Background gap={24} />
        <Controls showInteractive={false} />
        {shape.names.length > 20 && (
          <MiniMap<GraphFlowNode> pannable zoomable nodeClassName={miniMapClass} />
        )}
        <FitOnLayout positions={positions} big={big} userMoved={userMoved} />
      </ReactFlow>
    </div>
  );
}

function toFlowNode(
  name: string,
  state: Node | undefined,
  pos: { x: number; y: number } | undefined,
  selected: boolean,
): GraphFlowNode {
  return {
    id: name,
    type: 'adagio',
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
    },
  };
}

/** Top-left corner of the graph at BIG_ZOOM. */
function cornerViewport(positions: Positions): { x: number; y: number; zoom: number } {
  let minX = Number.POSITIVE_INFINITY;
  let minY = Number.POSITIVE_INFINITY;
  for (const p of positions.values()) {
    minX = Math.min(minX, p.x);
    minY = Math.min(minY, p.y);
  }
  if (!Number.isFinite(minX)) return { x: 0, y: 0, zoom: BIG_ZOOM };
  return { x: 40 - minX * BIG_ZOOM, y: 40 - minY * BIG_ZOOM, zoom: BIG_ZOOM };
}

/**
 * Re-frames the view when the better (ELK) layout replaces the quick one, and
 * (small runs) when the graph area changes size, e.g. the node panel opens, so
 * the whole run stays in view until the user pans or zooms themselves.
 */
function FitOnLayout({
  positions,
  big,
  userMoved,
}: {
  positions: Positions;
  big: boolean;
  userMoved: { current: boolean };
}) {
  const flow = useReactFlow();
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    // Wait a frame so React Flow has the new positions before measuring bounds.
    const id = requestAnimationFrame(() => {
      if (big) void flow.setViewport(cornerViewport(positions));
      else void flow.fitView(FIT);
    });
    return () => cancelAnimationFrame(id);
  }, [positions, big, flow]);

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
