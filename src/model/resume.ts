import { InvalidArgumentError, RunNotRetryableError } from '../protocol/errors.js';
import { formatDuration, parseDuration } from './duration.js';
import {
  descendants,
  openTally,
  outcomeSinceRetry,
  type Topology,
  type TriggerDecision,
  tallied,
  triggerDecision,
  type UpstreamOutcome,
  type UpstreamTally,
} from './rules.js';
import type {
  AttemptConclusion,
  GraphSpec,
  Labels,
  NodeStatus,
  Params,
  Run,
  RunConclusion,
  RunStatus,
  TriggerRule,
} from './types.js';

/**
 * Rule 15 (retry, i.e. resume a run) as pure decisions: whether a run may be
 * retried, which nodes go back, and the status each gets. Every backend reads
 * the run, asks planRetry, and applies the plan in one atomic change (etcd:
 * chunked behind a work item like cancel).
 */

/** A retry is refused unless the run completed without succeeding (FAIL, CANCELLED, TIMED_OUT...). */
export function checkRetryable(
  runId: string,
  run: { status: RunStatus; conclusion?: RunConclusion | string },
): void {
  if (run.status !== 'COMPLETED' || !run.conclusion)
    throw new RunNotRetryableError(
      runId,
      `run ${runId} is ${run.status}: only a completed run that did not succeed can be retried (cancel it first)`,
    );
  if (run.conclusion === 'SUCCESS')
    throw new RunNotRetryableError(
      runId,
      `run ${runId} succeeded: nothing to retry (rerun starts a new run of its graph)`,
    );
}

/** What planRetry needs of each node. */
export interface RetryNodeView {
  name: string;
  trigger?: TriggerRule;
  status: NodeStatus;
  /** The node's last attempt's conclusion; undefined when it has none. */
  last?: AttemptConclusion;
  attempts: number;
  /** Its attempts when a retry last put it back (0: never): only a later attempt counts (completedOutcome). */
  attemptsBeforeRetry: number;
}

/** A node a retry puts back, with the status it gets and its upstream tally (what its trigger decides from later). */
export interface RetriedNode {
  name: string;
  status: Extract<NodeStatus, 'WAITING' | 'READY' | 'COMPLETED'>;
  tally: UpstreamTally;
  /** Its upstream nodes that count as completed, and how (what `tally` sums). */
  counted: Record<string, UpstreamOutcome>;
  /** The node's attempts so far: the retry budgets count from here (Node.attempts_before_retry). */
  attemptsBeforeRetry: number;
}

export interface RetryPlan {
  /** In topological order; a node whose trigger can no longer hold is COMPLETED again (unreached). */
  nodes: RetriedNode[];
  /** A node the retry leaves alone failed for good: the run will conclude FAIL whatever happens. */
  failed: boolean;
  /** Every node went back COMPLETED: the run completes at once (its conclusion as `failed` says). */
  completed: boolean;
}

/**
 * Rule 15: the nodes that did not succeed go back (or the named ones and
 * every node downstream of them, succeeded or not); each gets WAITING, READY
 * or (its trigger can no longer hold) COMPLETED, judged in topological order
 * from its upstream nodes that stay as they are. Succeeded nodes keep their
 * attempts and outputs; nobody's attempts are removed.
 */
export function planRetry(
  runId: string,
  views: readonly RetryNodeView[],
  topo: Topology,
  named?: readonly string[],
): RetryPlan {
  const byName = new Map(views.map((v) => [v.name, v]));
  // How each node counts as it stands: a SUCCESS (or failure) from before a retry put it back counts as neither.
  const standing = (v: RetryNodeView) => outcomeSinceRetry(v.last, v.attempts, v.attemptsBeforeRetry);
  const back = new Set<string>();
  if (named && named.length > 0) {
    for (const n of named) {
      if (!byName.has(n))
        throw new InvalidArgumentError(`retry of run ${runId}: no node named ${JSON.stringify(n)}`);
      back.add(n);
      for (const d of descendants(n, topo.downstream)) back.add(d);
    }
    refuseLeftUndone(runId, byName, back, topo, standing);
  } else for (const v of views) if (standing(v) !== 'succeeded') back.add(v.name);

  // Kahn's order over the nodes going back (edges between them only).
  const indegree = new Map<string, number>();
  for (const n of back) indegree.set(n, (topo.upstream.get(n) ?? []).filter((u) => back.has(u)).length);
  const queue = [...back].filter((n) => indegree.get(n) === 0);
  const outcome = new Map<string, UpstreamOutcome>();
  const nodes: RetriedNode[] = [];
  for (let i = 0; i < queue.length; i++) {
    const name = queue[i]!;
    const ups = topo.upstream.get(name) ?? [];
    let tally = openTally(ups.length);
    const counted: Record<string, UpstreamOutcome> = {};
    for (const u of ups) {
      // Going back: counts only when it went back COMPLETED (unreached) just before.
      const o = back.has(u) ? outcome.get(u) : standing(byName.get(u)!);
      if (!o) continue;
      tally = tallied(tally, o);
      counted[u] = o;
    }
    const decision: TriggerDecision =
      ups.length === 0 ? 'READY' : triggerDecision(byName.get(name)!.trigger, tally);
    const status = decision === 'READY' ? 'READY' : decision === 'WAIT' ? 'WAITING' : 'COMPLETED';
    if (status === 'COMPLETED') outcome.set(name, 'neither');
    nodes.push({ name, status, tally, counted, attemptsBeforeRetry: byName.get(name)!.attempts });
    for (const d of topo.downstream.get(name) ?? []) {
      if (!back.has(d)) continue;
      const left = indegree.get(d)! - 1;
      indegree.set(d, left);
      if (left === 0) queue.push(d);
    }
  }
  const failed = views.some((v) => !back.has(v.name) && standing(v) === 'failed');
  return { nodes, failed, completed: nodes.every((n) => n.status === 'COMPLETED') };
}

/**
 * A named retry leaves the other nodes as they are, so the run's conclusion
 * counts them: one that failed makes it FAIL. One whose work a cancel (or the
 * deadline) cut short, or that a cancel completed before it could run (its
 * trigger held, or it has no upstream), neither failed nor succeeded: the run
 * could only conclude SUCCESS without it, and a plain retry could never run
 * it again. Such a retry is refused, naming the nodes to add.
 */
function refuseLeftUndone(
  runId: string,
  byName: ReadonlyMap<string, RetryNodeView>,
  back: ReadonlySet<string>,
  topo: Topology,
  standing: (v: RetryNodeView) => UpstreamOutcome,
): void {
  const undone: string[] = [];
  for (const v of byName.values()) {
    if (back.has(v.name) || standing(v) !== 'neither') continue;
    if (v.attempts > v.attemptsBeforeRetry) {
      // It ran since it was last put back: neither means its last attempt was CANCELLED.
      undone.push(v.name);
      continue;
    }
    // Completed with no attempt: unreached by its trigger (it fails nothing), or skipped by a cancel. Its
    // upstream nodes are all left alone too (a node put back takes its descendants with it).
    const ups = topo.upstream.get(v.name) ?? [];
    let tally = openTally(ups.length);
    for (const u of ups) tally = tallied(tally, standing(byName.get(u)!));
    if (ups.length === 0 || triggerDecision(v.trigger, tally) === 'READY') undone.push(v.name);
  }
  if (undone.length === 0) return;
  const shown = undone.slice(0, 5).map((n) => JSON.stringify(n));
  throw new InvalidArgumentError(
    `retry of run ${runId}: ${undone.length === 1 ? 'node' : 'nodes'} ${shown.join(', ')}${undone.length > 5 ? ` and ${undone.length - 5} more` : ''} ` +
      `did not run to the end (cancelled) and would stay so, and the run could not succeed: name ${undone.length === 1 ? 'it' : 'them'} too, or retry the whole run`,
  );
}

/**
 * The graph a run was started from (what a rerun starts again): its nodes'
 * specs, its edges, and its deadline (rule 13) as the time from its creation
 * to its deadline. A retry lifts a run's deadline, so a run retried since
 * gives a graph without one.
 */
export function graphOfRun(run: Pick<Run, 'nodes' | 'edges' | 'createdAt' | 'deadlineAt'>): GraphSpec {
  const graph: GraphSpec = { nodes: run.nodes.map((n) => n.spec), edges: run.edges.map((e) => ({ ...e })) };
  const deadlineMs = run.deadlineAt ? Date.parse(run.deadlineAt) - Date.parse(run.createdAt) : Number.NaN;
  if (deadlineMs > 0) {
    // The short form where it is exact (a "2h" deadline reads back "2h"), else milliseconds.
    const short = formatDuration(deadlineMs);
    graph.deadline = parseDuration(short) === deadlineMs ? short : `${deadlineMs}ms`;
  }
  return graph;
}

/**
 * What a rerun starts: the run's graph, and its identity (name, labels) kept. A run started from a workflow
 * starts that same version again with the params it recorded (defaults included), so the new run is listed
 * under the workflow like the first; versions are immutable, so the graph is the same. `graph` is the
 * fallback for when that workflow was deleted since: the same graph with the name and labels, unlinked.
 * The request id is never carried: a rerun is a new start, not a repeat of the old request.
 */
export interface RerunPlan {
  graph: GraphSpec;
  workflow?: { name: string; version: number; params: Params };
  name?: string;
  labels?: Labels;
}

export function planRerun(run: Run): RerunPlan {
  const plan: RerunPlan = { graph: graphOfRun(run) };
  if (run.workflow && run.workflowVersion !== undefined && run.workflowVersion > 0) {
    plan.workflow = { name: run.workflow, version: run.workflowVersion, params: { ...(run.params ?? {}) } };
  }
  if (run.name) plan.name = run.name;
  if (run.labels && Object.keys(run.labels).length > 0) plan.labels = { ...run.labels };
  return plan;
}
