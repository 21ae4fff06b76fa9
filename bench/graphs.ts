import type { GraphSpec, NodeSpec } from '../src/model/index.js';

/** Graphs the benchmarks run; every node uses one no-op runtime. */

const node = (name: string, runtime: string): NodeSpec => ({ name, runtime, metadata: {}, retry: {} });

/** The 7-node example DAG: a→c, a→d, b→d, b→f, c→e, d→e, e→g, f→g. */
export function sevenNode(runtime = 'noop'): GraphSpec {
  const edges = ['ac', 'ad', 'bd', 'bf', 'ce', 'de', 'eg', 'fg'].map(([s, d]) => ({
    source: s!,
    destination: d!,
  }));
  return { nodes: [...'abcdefg'].map((n) => node(n, runtime)), edges };
}

/** One large run: a root fanning out to `width` nodes that join, then a chain of `chain` nodes. */
export function wideAndLong(total = 10_000, runtime = 'noop'): GraphSpec {
  const width = Math.floor(total / 2);
  const chain = total - width - 2;
  const nodes = [node('root', runtime), node('join', runtime)];
  const edges = [];
  for (let i = 0; i < width; i++) {
    nodes.push(node(`w${i}`, runtime));
    edges.push({ source: 'root', destination: `w${i}` }, { source: `w${i}`, destination: 'join' });
  }
  let prev = 'join';
  for (let i = 0; i < chain; i++) {
    nodes.push(node(`c${i}`, runtime));
    edges.push({ source: prev, destination: `c${i}` });
    prev = `c${i}`;
  }
  return { nodes, edges };
}
