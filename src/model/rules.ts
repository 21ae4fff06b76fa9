import type {
  AttemptConclusion,
  GraphSpec,
  NodeSpec,
  NodeState,
  NodeStatus,
  RunConclusion,
  RunStatus,
} from './types.js';

/**
 * The protocol's pure rules (docs/design.md §3), shared by every backend so they
 * cannot drift apart: what a backend stores differs, what it decides does not.
 */

/** Upstream and downstream adjacency of a graph, by node name. */
export interface Topology {
  upstream: Map<string, string[]>;
  downstream: Map<string, string[]>;
}

export function topology(spec: GraphSpec): Topology {
  const upstream = new Map<string, string[]>();
  const downstream = new Map<string, string[]>();
  for (const n of spec.nodes) {
    upstream.set(n.name, []);
    downstream.set(n.name, []);
  }
  for (const e of spec.edges) {
    upstream.get(e.destination)!.push(e.source);
    downstream.get(e.source)!.push(e.destination);
  }
  return { upstream, downstream };
}

/** Rule 1: nodes with no inbound edges start READY, the rest WAITING. */
export function initialStatus(upstreamCount: number): NodeStatus {
  return upstreamCount === 0 ? 'READY' : 'WAITING';
}

/**
 * Rule 5: after an attempt with this conclusion, does the node go back to READY?
 * `max_attempts` counts attempts of that conclusion, including this one.
 */
export function shouldRetry(
  spec: NodeSpec,
  conclusion: AttemptConclusion,
  previous: readonly { conclusion: AttemptConclusion }[],
): boolean {
  if (conclusion !== 'FAIL' && conclusion !== 'ERROR') return false;
  const policy = spec.retry[conclusion === 'FAIL' ? 'fail' : 'error'];
  if (!policy) return false;
  let count = 1;
  for (const a of previous) if (a.conclusion === conclusion) count++;
  return count < policy.maxAttempts;
}

/** Every node downstream of `from` (not `from` itself), breadth first. */
export function descendants(from: string, downstream: Map<string, string[]>): string[] {
  const seen = new Set<string>([from]);
  const queue = [from];
  const out: string[] = [];
  for (let i = 0; i < queue.length; i++) {
    for (const d of downstream.get(queue[i]!) ?? []) {
      if (seen.has(d)) continue;
      seen.add(d);
      out.push(d);
      queue.push(d);
    }
  }
  return out;
}

/** Rule 7, from counts of nodes per status. */
export function runStatus(counts: Record<NodeStatus, number>): RunStatus {
  const total = counts.WAITING + counts.READY + counts.RUNNING + counts.COMPLETED;
  if (counts.COMPLETED === total) return 'COMPLETED';
  if (counts.RUNNING === 0 && counts.COMPLETED === 0) return 'WAITING';
  return 'RUNNING';
}

/** The run's conclusion once completed: SUCCESS when every node's last attempt succeeded. */
export function runConclusion(
  nodes: readonly Pick<NodeState, 'attempts'>[],
  cancelled: boolean,
): RunConclusion {
  if (cancelled) return 'CANCELLED';
  for (const n of nodes) {
    const last = n.attempts[n.attempts.length - 1];
    if (last?.conclusion !== 'SUCCESS') return 'FAIL';
  }
  return 'SUCCESS';
}

/**
 * When a completed run finished, derived from its nodes (the latest node
 * completion) where a backend has not stored it; empty while it runs.
 */
export function runFinishedAt(nodes: readonly Pick<NodeState, 'status' | 'finishedAt'>[]): string {
  let latest = '';
  for (const n of nodes) {
    if (n.status !== 'COMPLETED') return '';
    if (n.finishedAt && Date.parse(n.finishedAt) > (latest ? Date.parse(latest) : -Infinity))
      latest = n.finishedAt;
  }
  return latest;
}

/** A node succeeded when it completed and its last attempt is a SUCCESS. */
export function succeeded(node: Pick<NodeState, 'status' | 'attempts'>): boolean {
  return node.status === 'COMPLETED' && node.attempts[node.attempts.length - 1]?.conclusion === 'SUCCESS';
}
