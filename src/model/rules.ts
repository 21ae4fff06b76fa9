import { parseDuration } from './duration.js';
import { rfc3339 } from './ids.js';
import { LIMITS } from './limits.js';
import type {
  Attempt,
  AttemptConclusion,
  Backoff,
  GraphSpec,
  NodeSpec,
  NodeState,
  NodeStatus,
  RunConclusion,
  RunStatus,
  TriggerRule,
} from './types.js';
import { DEFAULT_TRIGGER } from './types.js';

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

/** The node spec a backend stores: only the protocol's fields, absent metadata and retry as empty, the default trigger left out. */
export function normalizeNodeSpec(n: NodeSpec): NodeSpec {
  const spec: NodeSpec = {
    name: n.name,
    runtime: n.runtime,
    metadata: n.metadata ?? {},
    retry: n.retry ?? {},
    ...(n.timeout ? { timeout: n.timeout } : {}),
  };
  if (n.trigger && n.trigger !== DEFAULT_TRIGGER) spec.trigger = n.trigger;
  return spec;
}

/** Rule 1: nodes with no inbound edges start READY, the rest WAITING. */
export function initialStatus(upstreamCount: number): NodeStatus {
  return upstreamCount === 0 ? 'READY' : 'WAITING';
}

/** Attempts of each retryable conclusion a node has had: what rule 5 decides from. */
export interface RetryCounts {
  fail: number;
  error: number;
}

/** What a finish does to its node (rules 4 and 5). */
export type FinishOutcome =
  /** SUCCESS: the node completes and its dependents count it down. */
  | 'SUCCEEDED'
  /** FAIL or ERROR with attempts left: the node goes back to READY. */
  | 'RETRY'
  /** FAIL or ERROR with no attempts left: the node completes failed; its dependents' triggers decide (rule 14). */
  | 'FAILED';

/**
 * Rule 5, from counters: `retry[conclusion].maxAttempts` counts attempts of
 * that conclusion, this one included. `prior` counts the attempts before it.
 */
export function finishOutcome(
  spec: Pick<NodeSpec, 'retry'>,
  conclusion: Exclude<AttemptConclusion, 'CANCELLED'>,
  prior: RetryCounts,
): FinishOutcome {
  if (conclusion === 'SUCCESS') return 'SUCCEEDED';
  const key = conclusion === 'FAIL' ? 'fail' : 'error';
  const policy = spec.retry[key];
  return policy && prior[key] + 1 < policy.maxAttempts ? 'RETRY' : 'FAILED';
}

/**
 * Rule 5's delay: how long a node sent back to READY by its `retry`-th retry
 * of this conclusion (1 for the first) waits before it may be claimed.
 * initial * factor^(retry - 1), capped at max, then spread by up to ±jitter of
 * itself (`random` in [0, 1), 0.5 meaning no spread). 0 without a backoff.
 * The spec was validated at start (validate.ts), so its durations parse.
 */
export function retryDelayMs(backoff: Backoff | undefined, retry: number, random: number): number {
  const b = backoff && backoffMs(backoff);
  if (!b || b.i <= 0) return 0; // (and 0 × an unbounded growth is no number)
  const base = Math.min(b.m ?? MAX_RETRY_DELAY_MS, MAX_RETRY_DELAY_MS, b.i * b.f ** Math.max(0, retry - 1));
  const spread = b.j * (2 * random - 1);
  return Math.max(0, Math.floor(base * (1 + spread)));
}

/** The longest retry delay, whatever the backoff says: a week (a factor without a max grows without bound). */
export const MAX_RETRY_DELAY_MS = 7 * 24 * 3_600_000;

/**
 * A backoff with its durations in ms and its defaults filled in (i initial,
 * f factor, m max or null, j jitter): what retryDelayMs computes from, and
 * what a store that computes the delay itself keeps (PostgreSQL's
 * retry_delay_ms, held to retryDelayMs by test/postgres/timing.test.ts).
 */
export interface BackoffMs {
  i: number;
  f: number;
  m: number | null;
  j: number;
}

export function backoffMs(b: Backoff): BackoffMs {
  return {
    i: parseDuration(b.initial),
    f: b.factor ?? 1,
    m: b.max ? parseDuration(b.max) : null,
    j: b.jitter ?? 0,
  };
}

/** Each retry conclusion's backoff of a node in ms, or undefined when it has none. */
export function nodeBackoffMs(
  spec: Pick<NodeSpec, 'retry'>,
): Partial<Record<'fail' | 'error', BackoffMs>> | undefined {
  const out: Partial<Record<'fail' | 'error', BackoffMs>> = {};
  for (const k of ['fail', 'error'] as const) {
    const b = spec.retry[k]?.backoff;
    if (b) out[k] = backoffMs(b);
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/**
 * When the retry a finish decided becomes claimable (ms since the epoch), or
 * 0 when at once. `prior` counts the attempts before the one just finished,
 * so the retry's number is the count of this conclusion including it.
 */
export function nextAttemptAt(
  spec: Pick<NodeSpec, 'retry'>,
  conclusion: 'FAIL' | 'ERROR',
  prior: RetryCounts,
  nowMs: number,
  random: number = Math.random(),
): number {
  const key = conclusion === 'FAIL' ? 'fail' : 'error';
  const delay = retryDelayMs(spec.retry[key]?.backoff, prior[key] + 1, random);
  return delay > 0 ? nowMs + delay : 0;
}

/** Rule 5: a READY node is claimable once its retry delay has passed (`readyAtMs` 0 means no delay). */
export function claimable(readyAtMs: number | undefined, nowMs: number): boolean {
  return !readyAtMs || readyAtMs <= nowMs;
}

/** Rule 11: a node's timeout in ms, or undefined when it has none (validated at start, so it parses). */
export function nodeTimeoutMs(spec: Pick<NodeSpec, 'timeout'>): number | undefined {
  return spec.timeout ? parseDuration(spec.timeout) : undefined;
}

/** Rule 11: a RUNNING attempt that started at `startedAtMs` is past its node's timeout at `nowMs`. */
export function timedOut(spec: Pick<NodeSpec, 'timeout'>, startedAtMs: number, nowMs: number): boolean {
  const ms = nodeTimeoutMs(spec);
  return ms !== undefined && startedAtMs + ms <= nowMs;
}

/** Metadata key of an attempt the store (or an agent) ended at its node's timeout: the timeout, as written. */
export const TIMEOUT_METADATA_KEY = 'adagio.timeout';

/**
 * Rule 11: the ERROR finish the store records for an attempt past its node's
 * timeout, as the claim holder would have: its output names the timeout.
 */
export function timeoutFinish(spec: Pick<NodeSpec, 'timeout'>): {
  conclusion: 'ERROR';
  output: Uint8Array;
  metadata: Record<string, string[]>;
} {
  return {
    conclusion: 'ERROR',
    output: new TextEncoder().encode(
      `\nadagio: timed out after ${spec.timeout} (the node's timeout); the store ended this attempt\n`,
    ),
    metadata: { [TIMEOUT_METADATA_KEY]: [spec.timeout ?? ''] },
  };
}

/** The node's status after a finish with this outcome. */
export function statusAfterFinish(outcome: FinishOutcome): NodeStatus {
  return outcome === 'RETRY' ? 'READY' : 'COMPLETED';
}

/** The counters after an attempt with this conclusion (`prior` itself when it counts for neither: no garbage per SUCCESS). */
export function countAttempt(prior: RetryCounts, conclusion: AttemptConclusion): RetryCounts {
  if (conclusion !== 'FAIL' && conclusion !== 'ERROR') return prior;
  return {
    fail: prior.fail + (conclusion === 'FAIL' ? 1 : 0),
    error: prior.error + (conclusion === 'ERROR' ? 1 : 0),
  };
}

/** Rule 3: the output of the ERROR attempt that records the recovery of a claim whose lease lapsed. */
export function orphanRecoveredMessage(
  lapsed: { previousClaimId?: string; previousAgentId?: string },
  agentId: string,
): string {
  const previous = lapsed.previousAgentId ? ` of agent ${lapsed.previousAgentId}` : '';
  return `claim ${lapsed.previousClaimId ?? '(unknown)'}${previous} lapsed: its agent stopped heartbeating (recovered by agent ${agentId})`;
}

/**
 * What rule 6 records of a node cancelled while RUNNING under a claim, less
 * the times and output, which each store keeps in its own encoding (PostgreSQL
 * and DynamoDB store ms and read the streamed output themselves).
 */
export function cancelledAttemptFields(claim: {
  claimId: string;
  agentId: string;
}): Pick<Attempt, 'conclusion' | 'metadata' | 'claimId' | 'agentId'> {
  return { conclusion: 'CANCELLED', metadata: {}, claimId: claim.claimId, agentId: claim.agentId };
}

/**
 * Rule 20: when an attempt started. A holder that claimed ahead reports when
 * its work really started (FinishRequest.startedAt, its own clock); the store
 * keeps that within [claimed at, finished at] by its own clock, so a skewed or
 * forged report can neither move the attempt before its claim nor after its
 * end. Without a report, the claim's time (PostgreSQL applies the same bounds
 * in finish_nodes, migration 12).
 */
export function attemptStartMs(claimedAtMs: number, finishedAtMs: number, reportedMs?: number): number {
  if (reportedMs === undefined || !claimedAtMs) return claimedAtMs;
  return Math.max(claimedAtMs, Math.min(reportedMs, finishedAtMs));
}

/** The CANCELLED attempt rule 6 records for a node cancelled while RUNNING under a claim. */
export function cancelledAttempt(
  claim: { claimId: string; agentId: string },
  startedAtMs: number,
  nowMs: number,
  /** What the attempt streamed before the cancel: it stays the attempt's output. */
  output: Uint8Array = new Uint8Array(),
): Attempt {
  return {
    ...cancelledAttemptFields(claim),
    output,
    startedAt: startedAtMs ? rfc3339(startedAtMs) : '',
    finishedAt: rfc3339(nowMs),
  };
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

/** Rule 7: COMPLETED when every node is, WAITING while none has been claimed or completed, else RUNNING. */
export function runStatusOf(nodes: { total: number; completed: number; running: number }): RunStatus {
  if (nodes.completed === nodes.total) return 'COMPLETED';
  if (nodes.running === 0 && nodes.completed === 0) return 'WAITING';
  return 'RUNNING';
}

/** Rule 7, from counts of nodes per status. */
export function runStatus(counts: Record<NodeStatus, number>): RunStatus {
  const total = counts.WAITING + counts.READY + counts.RUNNING + counts.COMPLETED;
  return runStatusOf({ total, completed: counts.COMPLETED, running: counts.RUNNING });
}

/**
 * The run's conclusion once completed (rule 7): CANCELLED when cancelled, FAIL
 * when any node failed for good (its last attempt a FAIL or ERROR, whatever
 * its handlers did), else SUCCESS.
 */
export function conclusionOf(run: {
  cancelled: boolean;
  failed: boolean;
  timedOut?: boolean;
}): RunConclusion {
  // Rule 13: a run cancelled by its deadline concludes TIMED_OUT.
  if (run.timedOut) return 'TIMED_OUT';
  if (run.cancelled) return 'CANCELLED';
  return run.failed ? 'FAIL' : 'SUCCESS';
}

/**
 * The run's conclusion once completed, from its nodes: FAIL when any node
 * failed since a retry last put it back (its last attempt then a FAIL or ERROR).
 */
export function runConclusion(
  nodes: readonly Pick<NodeState, 'attempts' | 'attemptsBeforeRetry'>[],
  cancelled: boolean,
  timedOut = false,
): RunConclusion {
  // A node unreached because its trigger did not hold (an unneeded failure handler) fails nothing (rule 14),
  // nor does one that failed before a retry put it back and then completed unreached.
  const failed = nodes.some((n) => completedOutcome(n) === 'failed');
  return conclusionOf({ cancelled, failed, timedOut });
}

/** Rule 13: when a run of this graph, created at `createdAtMs`, passes its deadline (ms), or undefined without one. */
export function deadlineAt(spec: Pick<GraphSpec, 'deadline'>, createdAtMs: number): number | undefined {
  return spec.deadline ? createdAtMs + parseDuration(spec.deadline) : undefined;
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

/**
 * Rule 19: a node failed for good when it completed after an attempt that
 * FAILed or ERRORed (rule 5 left no retry). Unreached and cancelled nodes did
 * not fail. What the runs list names (failedNodesSummary).
 */
export function failedForGood(node: Pick<NodeState, 'status' | 'attempts'>): boolean {
  const last = node.attempts[node.attempts.length - 1]?.conclusion;
  return node.status === 'COMPLETED' && (last === 'FAIL' || last === 'ERROR');
}

/**
 * Rule 19: the runs list's bounded account of a run's failed nodes: up to
 * LIMITS.maxListedFailedNodes names in byte order, and how many failed in
 * all. `names` may hold more than the bound (a backend that has them all) or
 * just the first ones in byte order (a backend that reads a bounded range).
 */
export function failedNodesSummary(
  names: Iterable<string>,
  count: number,
): { failedNodes: string[]; failedNodeCount: number } {
  const sorted = [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    failedNodes: sorted.slice(0, LIMITS.maxListedFailedNodes),
    failedNodeCount: Math.max(count, sorted.length),
  };
}

/**
 * A node succeeded when it completed and its last attempt is a SUCCESS made
 * since a retry last put it back (rule 15): one put back that then completed
 * unreached made no attempt since, and its old SUCCESS does not count.
 */
export function succeeded(node: Pick<NodeState, 'status' | 'attempts' | 'attemptsBeforeRetry'>): boolean {
  return node.status === 'COMPLETED' && completedOutcome(node) === 'succeeded';
}

/**
 * How a completed node counts for its dependents (rule 14): by its last
 * attempt, if it made one since a retry last put it back; otherwise (completed
 * unreached, then or before) neither.
 */
export function completedOutcome(node: Pick<NodeState, 'attempts' | 'attemptsBeforeRetry'>): UpstreamOutcome {
  return outcomeSinceRetry(
    node.attempts[node.attempts.length - 1]?.conclusion,
    node.attempts.length,
    node.attemptsBeforeRetry ?? 0,
  );
}

/** completedOutcome from counts: the last attempt's conclusion, the attempts made, and those made before the last put-back. */
export function outcomeSinceRetry(
  last: AttemptConclusion | undefined,
  attempts: number,
  attemptsBeforeRetry: number,
): UpstreamOutcome {
  return attempts <= attemptsBeforeRetry ? 'neither' : upstreamOutcome(last);
}

/** How a completed upstream node counts for its dependents' triggers (rule 14). */
export type UpstreamOutcome = 'succeeded' | 'failed' | 'neither';

/**
 * A completed node's outcome: its last attempt SUCCESS is succeeded, FAIL or
 * ERROR is failed; completed with no attempt (unreached) or CANCELLED is neither.
 */
export function upstreamOutcome(lastConclusion: AttemptConclusion | undefined): UpstreamOutcome {
  if (lastConclusion === 'SUCCESS') return 'succeeded';
  if (lastConclusion === 'FAIL' || lastConclusion === 'ERROR') return 'failed';
  return 'neither';
}

/** A dependent's upstream nodes: how many, and how many completed, succeeded and failed. */
export interface UpstreamTally {
  total: number;
  completed: number;
  succeeded: number;
  failed: number;
}

/** A tally with one more upstream completed with this outcome. */
export function tallied(t: UpstreamTally, outcome: UpstreamOutcome): UpstreamTally {
  return {
    total: t.total,
    completed: t.completed + 1,
    succeeded: t.succeeded + (outcome === 'succeeded' ? 1 : 0),
    failed: t.failed + (outcome === 'failed' ? 1 : 0),
  };
}

/** What a WAITING node's trigger says: wait for more upstream nodes, run (READY), or complete unreached. */
export type TriggerDecision = 'WAIT' | 'READY' | 'UNREACHED';

/**
 * Rule 14: a node's trigger is judged once all its upstream nodes completed:
 * READY when it holds, unreached otherwise. A rule that no outcome of the
 * upstream nodes still open could make hold is judged at once (unreached), so
 * the default all_success completes a node unreached as soon as an upstream
 * failed, as rule 5 always did.
 */
export function triggerDecision(rule: TriggerRule | undefined, t: UpstreamTally): TriggerDecision {
  const open = t.total - t.completed;
  // Whether the rule holds when the open upstream nodes all end best for it (succeed or fail as it needs).
  const canHold =
    triggerHolds(rule, { ...t, succeeded: t.succeeded + open, failed: t.failed }) ||
    triggerHolds(rule, { ...t, succeeded: t.succeeded, failed: t.failed + open });
  if (open === 0) return triggerHolds(rule, t) ? 'READY' : 'UNREACHED';
  return canHold ? 'WAIT' : 'UNREACHED';
}

function triggerHolds(rule: TriggerRule | undefined, t: Omit<UpstreamTally, 'completed'>): boolean {
  switch (rule ?? DEFAULT_TRIGGER) {
    case 'all_success':
      return t.succeeded === t.total;
    case 'all_done':
      return true;
    case 'all_failed':
      return t.failed === t.total;
    case 'one_failed':
      return t.failed > 0;
    case 'one_success':
      return t.succeeded > 0;
    case 'none_failed':
      return t.failed === 0;
  }
}

/** The tally of a node with no upstream completed yet. */
export function openTally(upstreamCount: number): UpstreamTally {
  return { total: upstreamCount, completed: 0, succeeded: 0, failed: 0 };
}

/**
 * Rule 21: the agent id under which a hand-off takes a dependent that became
 * READY, given how many the finish took already; undefined when the offer has
 * no place left or does not run its runtime.
 */
export function handOffPlace(
  offer: { agentIds: readonly string[]; runtimes: readonly string[] },
  taken: number,
  runtime: string,
): string | undefined {
  return taken < offer.agentIds.length && offer.runtimes.includes(runtime)
    ? offer.agentIds[taken]
    : undefined;
}
