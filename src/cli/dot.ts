import type { NodeState, Run } from '../model/types.js';
import { nodeConclusion, topologicalOrder } from './format.js';

/**
 * A run as a Graphviz digraph (`adagio runs inspect ID -o dot | dot -Tsvg`).
 * Nodes are filled by how they stand: green succeeded, red failed, orange
 * errored, grey cancelled, dashed unreached, blue running, yellow ready,
 * white waiting.
 */

const STYLE: Record<string, { fill: string; font?: string; dashed?: boolean }> = {
  SUCCESS: { fill: '#b7e4c7' },
  FAIL: { fill: '#f4a6a6' },
  ERROR: { fill: '#f8c291' },
  CANCELLED: { fill: '#d0d0d0' },
  UNREACHED: { fill: '#f2f2f2', font: '#777777', dashed: true },
  RUNNING: { fill: '#a9cdf5' },
  READY: { fill: '#fff3b0' },
  WAITING: { fill: '#ffffff' },
};

/**
 * A DOT double-quoted string. Inside quotes only `"` needs escaping for the
 * parser, but labels are escString, where a backslash starts an escape (`\n`,
 * `\N`, `\l`…), so backslashes are doubled and line breaks written as `\n`;
 * the same escaping is used for ids so a node's id and label stay in step.
 */
export function dotString(s: string): string {
  return `"${s
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\r\n|\r|\n/g, '\\n')}"`;
}

function nodeLine(n: NodeState): string {
  const key = nodeConclusion(n) || n.status;
  const style = STYLE[key] ?? STYLE.WAITING!;
  const tries = n.attempts.length > 1 ? ` ×${n.attempts.length}` : '';
  const label = `${n.spec.name}\n${n.spec.runtime} · ${key}${tries}`;
  const attrs = [
    `label=${dotString(label)}`,
    `fillcolor=${dotString(style.fill)}`,
    `tooltip=${dotString(`${n.spec.name}: ${n.status}${key !== n.status ? ` ${key}` : ''}`)}`,
  ];
  if (style.dashed) attrs.push('style="rounded,filled,dashed"');
  if (style.font) attrs.push(`fontcolor=${dotString(style.font)}`);
  return `  ${dotString(n.spec.name)} [${attrs.join(', ')}];`;
}

export function runDot(run: Run): string {
  const lines = [
    `digraph ${dotString(`run ${run.id}`)} {`,
    `  label=${dotString(`run ${run.id}: ${run.status}${run.conclusion ? ` ${run.conclusion}` : ''}`)};`,
    '  labelloc=t;',
    '  fontname="Helvetica";',
    '  rankdir=LR;',
    '  node [shape=box, style="rounded,filled", fontname="Helvetica", fillcolor="#ffffff"];',
    '  edge [color="#555555"];',
    ...topologicalOrder(run.nodes, run.edges).map(nodeLine),
    ...run.edges.map((e) => `  ${dotString(e.source)} -> ${dotString(e.destination)};`),
    '}',
  ];
  return `${lines.join('\n')}\n`;
}
