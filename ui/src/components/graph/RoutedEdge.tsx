import { BaseEdge, type Edge, type EdgeProps } from '@xyflow/react';
import { memo } from 'react';

export type RoutedFlowEdge = Edge<{ points: number[] }, 'routed'>;

const RADIUS = 6;

/**
 * An edge drawn along ELK's orthogonal route (so edges go around nodes rather
 * than through them), with slightly rounded corners.
 */
function RoutedEdgeView({ data, markerEnd, style }: EdgeProps<RoutedFlowEdge>) {
  return <BaseEdge path={roundedPath(data?.points ?? [])} markerEnd={markerEnd} style={style} />;
}

export const RoutedEdge = memo(RoutedEdgeView);

export function roundedPath(p: number[]): string {
  if (p.length < 4) return '';
  let d = `M ${p[0]} ${p[1]}`;
  for (let i = 2; i + 3 < p.length; i += 2) {
    const [px, py, x, y, nx, ny] = [p[i - 2]!, p[i - 1]!, p[i]!, p[i + 1]!, p[i + 2]!, p[i + 3]!];
    const r = Math.min(RADIUS, Math.hypot(x - px, y - py) / 2, Math.hypot(nx - x, ny - y) / 2);
    const a = towards(x, y, px, py, r);
    const b = towards(x, y, nx, ny, r);
    d += ` L ${a[0]} ${a[1]} Q ${x} ${y} ${b[0]} ${b[1]}`;
  }
  return `${d} L ${p[p.length - 2]} ${p[p.length - 1]}`;
}

function towards(x: number, y: number, tx: number, ty: number, r: number): [number, number] {
  const len = Math.hypot(tx - x, ty - y) || 1;
  return [x + ((tx - x) / len) * r, y + ((ty - y) / len) * r];
}
