import {
  Background,
  Controls,
  type Edge as FlowEdge,
  MarkerType,
  MiniMap,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
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
const ARROW = { type: MarkerType.ArrowClosed, width: 16, height: 16 };
const FIT = { maxZoom: 1, minZoom: 0.05 };
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
        proOptions={PRO}
      >
        <Background gap={24} />
        <Controls showInteractive={false} />
        {shape.names.length > 20 && (
          <MiniMap<GraphFlowNode> pannable zoomable nodeClassName={miniMapClass} />
        )}
        <FitOnLayout positions={positions} big={big} />
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
    selected,
    data: {
      name,
      runtime: state?.spec?.runtime ?? '',
      look: state ? nodeLook(state) : 'waiting',
      attempts: state?.attempts.length ?? 0,
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

/** Re-frames the view when the better (ELK) layout replaces the quick one. */
function FitOnLayout({ positions, big }: { positions: Positions; big: boolean }) {
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
  return null;
}
