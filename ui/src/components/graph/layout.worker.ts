/// <reference lib="webworker" />
// Runs the ELK layered layout off the main thread, so a 1,000-node run never
// freezes the page, and returns only node positions (a small message).
import ELK, { type ElkExtendedEdge, type ElkNode } from 'elkjs/lib/elk.bundled.js';
import type { LayoutReply, LayoutRequest, Route } from './layout-protocol.js';

const elk = new ELK();

// Loading elk.bundled.js inside a worker installs its own self.onmessage (it
// doubles as ELK's worker script); this worker speaks its own protocol instead.
self.onmessage = (event: MessageEvent<LayoutRequest>) => {
  void layout(event.data).then((reply) => self.postMessage(reply));
};

async function layout(req: LayoutRequest): Promise<LayoutReply> {
  try {
    const big = req.ids.length > 300;
    const input: ElkNode & { edges: ElkExtendedEdge[] } = {
      id: '__root',
      layoutOptions: {
        'elk.algorithm': 'layered',
        'elk.direction': 'RIGHT',
        'elk.layered.spacing.nodeNodeBetweenLayers': '70',
        'elk.spacing.nodeNode': '18',
        'elk.spacing.componentComponent': '48',
        'elk.layered.nodePlacement.strategy': 'BRANDES_KOEPF',
        'elk.edgeRouting': 'ORTHOGONAL',
        'elk.layered.spacing.edgeNodeBetweenLayers': '20',
        // Keep the graph file's order where the algorithm has a free choice: stable, predictable pictures.
        'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES',
        // Fewer crossing-minimisation passes on big graphs: seconds instead of minutes.
        'elk.layered.thoroughness': big ? '1' : '7',
      },
      children: req.ids.map((id) => ({ id, width: req.width, height: req.height })),
      edges: req.edges.map(([s, t], i) => ({ id: `e${i}`, sources: [s], targets: [t] })),
    };
    const graph = await elk.layout(input);
    const positions: [string, number, number][] = (graph.children ?? []).map((c) => [c.id, c.x ?? 0, c.y ?? 0]);
    const routes: Route[] = [];
    for (const e of graph.edges ?? []) {
      const section = e.sections?.[0];
      if (!section) continue;
      const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint];
      routes.push([Number(e.id.slice(1)), points.flatMap((p) => [p.x, p.y])]);
    }
    return { seq: req.seq, positions, routes };
  } catch (e) {
    return { seq: req.seq, error: e instanceof Error ? e.message : String(e) };
  }
}
