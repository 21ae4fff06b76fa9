/**
 * Why a node is where it is, in words an operator can act on: a READY node
 * waits for an agent serving its runtime, a WAITING node for its upstream
 * nodes, an unreached one (completed with no attempt) because an upstream node
 * did not succeed. Pure, over a minimal node shape, so the CLI (domain types)
 * and the web UI (wire types) say the same thing.
 */
export interface ExplainNode {
  name: string;
  runtime: string;
  status: 'WAITING' | 'READY' | 'RUNNING' | 'COMPLETED';
  /** Conclusions of its attempts, oldest first. */
  attempts: readonly string[];
  /** RFC 3339 of when a READY node waiting out its retry delay becomes claimable (rule 5). */
  nextAttemptAt?: string;
  /** Its trigger rule (rule 14); absent or empty is all_success. */
  trigger?: string;
}

export interface ExplainRun {
  nodes: ReadonlyMap<string, ExplainNode>;
  /** Upstream node names by node. */
  upstream: ReadonlyMap<string, readonly string[]>;
  cancelled: boolean;
}

const NAMES_SHOWN = 3;

export function explainNode(node: ExplainNode, run: ExplainRun): string | undefined {
  const succeeded = (n: ExplainNode | undefined) =>
    n?.status === 'COMPLETED' && n.attempts.at(-1) === 'SUCCESS';
  switch (node.status) {
    case 'READY':
      if (node.nextAttemptAt) return `waiting out its retry delay: next attempt due ${node.nextAttemptAt}`;
      return `waiting for an agent with runtime "${node.runtime}"`;
    case 'WAITING': {
      if (custom(node.trigger)) {
        const open = (run.upstream.get(node.name) ?? []).filter(
          (u) => run.nodes.get(u)?.status !== 'COMPLETED',
        );
        return open.length > 0
          ? `waiting for ${names(open)} to complete (trigger ${node.trigger})`
          : undefined;
      }
      const pending = (run.upstream.get(node.name) ?? []).filter((u) => !succeeded(run.nodes.get(u)));
      return pending.length > 0 ? `waiting for ${names(pending)} to succeed` : undefined;
    }
    case 'COMPLETED': {
      if (node.attempts.length > 0) return undefined;
      if (custom(node.trigger) && !run.cancelled) return `not run: its trigger ${node.trigger} did not hold`;
      const failed = failedAncestors(node.name, run);
      if (failed.length > 0) return `not run: upstream ${names(failed)} did not succeed`;
      return run.cancelled ? 'not run: the run was cancelled' : undefined;
    }
    default:
      return undefined;
  }
}

/** The nearest upstream nodes that ran and did not succeed, through unreached ones. */
function failedAncestors(name: string, run: ExplainRun): string[] {
  const found: string[] = [];
  const seen = new Set<string>();
  const queue = [...(run.upstream.get(name) ?? [])];
  while (queue.length > 0) {
    const u = queue.shift()!;
    if (seen.has(u)) continue;
    seen.add(u);
    const n = run.nodes.get(u);
    if (n?.status !== 'COMPLETED') continue;
    const last = n.attempts.at(-1);
    if (last === undefined) queue.push(...(run.upstream.get(u) ?? []));
    else if (last !== 'SUCCESS') found.push(u);
  }
  return found;
}

/** A trigger other than the default all_success. */
function custom(trigger: string | undefined): trigger is string {
  return trigger !== undefined && trigger !== '' && trigger !== 'all_success';
}

function names(list: readonly string[]): string {
  const shown = list.slice(0, NAMES_SHOWN).join(', ');
  return list.length > NAMES_SHOWN ? `${shown} and ${list.length - NAMES_SHOWN} more` : shown;
}

/** The shape explainNode reads, from a run's nodes and edges. */
export function explainRun(
  nodes: Iterable<ExplainNode>,
  edges: readonly { source: string; destination: string }[],
  cancelled: boolean,
): ExplainRun {
  const byName = new Map<string, ExplainNode>();
  for (const n of nodes) byName.set(n.name, n);
  const upstream = new Map<string, string[]>();
  for (const e of edges) {
    const list = upstream.get(e.destination);
    if (list) list.push(e.source);
    else upstream.set(e.destination, [e.source]);
  }
  return { nodes: byName, upstream, cancelled };
}

/**
 * Warnings for a run about to wait forever: each runtime of its nodes that no
 * live agent serves, with the nodes that need it (they stay READY until an
 * agent with that runtime registers).
 */
export function unservedRuntimeWarnings(
  nodes: readonly { name: string; runtime: string }[],
  agents: readonly { runtimes: readonly { name: string }[] }[],
): string[] {
  const served = new Set(agents.flatMap((a) => a.runtimes.map((r) => r.name)));
  const needing = new Map<string, string[]>();
  for (const n of nodes) {
    if (served.has(n.runtime)) continue;
    const list = needing.get(n.runtime);
    if (list) list.push(n.name);
    else needing.set(n.runtime, [n.name]);
  }
  return [...needing].map(
    ([runtime, list]) =>
      `no live agent serves runtime "${runtime}" (needed by ${names(list)}): ${list.length === 1 ? 'it waits' : 'they wait'} until one registers`,
  );
}

/** `1s ×2 ≤1m ±20%`: a retry backoff (rule 5) in a few characters, as the CLI and the UI show it. */
export function backoffText(b: { initial: string; factor?: number; max?: string; jitter?: number }): string {
  return [
    b.initial,
    b.factor && b.factor !== 1 ? `×${b.factor}` : '',
    b.max ? `≤${b.max}` : '',
    b.jitter ? `±${Math.round(b.jitter * 100)}%` : '',
  ]
    .filter(Boolean)
    .join(' ');
}
