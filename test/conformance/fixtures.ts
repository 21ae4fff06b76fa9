/**
 * Graphs and byte helpers the conformance suite builds its runs from. Plain
 * data only: nothing here touches a repository.
 */
import type { GraphSpec, Metadata, NodeSpec, TriggerRule } from '../../src/model/types.js';

/** The runtime every fixture node uses unless a test says otherwise. */
export const RUNTIME = 'conformance';

export interface NodeOptions {
  runtime?: string;
  metadata?: Metadata;
  /** max_attempts per conclusion. */
  retry?: { fail?: number; error?: number };
  trigger?: TriggerRule;
}

export function node(name: string, options: NodeOptions = {}): NodeSpec {
  const retry: NodeSpec['retry'] = {};
  if (options.retry?.fail !== undefined) retry.fail = { maxAttempts: options.retry.fail };
  if (options.retry?.error !== undefined) retry.error = { maxAttempts: options.retry.error };
  const spec: NodeSpec = {
    name,
    runtime: options.runtime ?? RUNTIME,
    metadata: options.metadata ?? {},
    retry,
  };
  if (options.trigger) spec.trigger = options.trigger;
  return spec;
}

/** A graph from nodes (names or specs) and edges written `[source, destination]`. */
export function graph(nodes: (string | NodeSpec)[], edges: [string, string][] = []): GraphSpec {
  return {
    nodes: nodes.map((n) => (typeof n === 'string' ? node(n) : n)),
    edges: edges.map(([source, destination]) => ({ source, destination })),
  };
}

/** The example DAG of the issue: a→c, a→d, b→d, b→f, c→e, d→e, e→g, f→g. */
export const EXAMPLE_EDGES: [string, string][] = [
  ['a', 'c'],
  ['a', 'd'],
  ['b', 'd'],
  ['b', 'f'],
  ['c', 'e'],
  ['d', 'e'],
  ['e', 'g'],
  ['f', 'g'],
];
export const EXAMPLE_NODES = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
/** The example DAG's layers: each becomes READY once the previous ones succeeded. */
export const EXAMPLE_LAYERS = [['a', 'b'], ['c', 'd', 'f'], ['e'], ['g']];

/** The example DAG; `options` applies to the named nodes (all when omitted). */
export function exampleDag(options: Record<string, NodeOptions> = {}): GraphSpec {
  return graph(
    EXAMPLE_NODES.map((n) => node(n, options[n])),
    EXAMPLE_EDGES,
  );
}

/** Upstream node names of `name` in a graph, in edge order. */
export function upstreamOf(spec: GraphSpec, name: string): string[] {
  return spec.edges.filter((e) => e.destination === name).map((e) => e.source);
}

/** `count` independent nodes named `${prefix}0`, `${prefix}1`, …: all READY at start. */
export function independentNodes(count: number, prefix = 'n', options: NodeOptions = {}): GraphSpec {
  return graph(Array.from({ length: count }, (_, i) => node(`${prefix}${i}`, options)));
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function text(data: Uint8Array | undefined): string {
  return data === undefined ? '' : decoder.decode(data);
}

/** A node's inputs as text, so backends returning Buffer or Uint8Array compare equal. */
export function inputsAsText(inputs: Record<string, Uint8Array>): Record<string, string> {
  return Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, text(v)]));
}

/** The output the walk tests give each node, so inputs can be checked exactly. */
export function outputOf(name: string, attempt = 1): string {
  return `output of ${name} #${attempt}`;
}
