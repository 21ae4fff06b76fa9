import {
  type Attempt,
  type AttemptConclusion,
  attemptOutput,
  attemptStartMs,
  boundedAppend,
  type Claim,
  cancelledAttempt,
  claimable,
  completedOutcome,
  concatBytes,
  conclusionOf,
  countAttempt,
  deadlineAt,
  type Edge,
  emptyNodeCounts,
  finishOutcome,
  initialStatus,
  type NodeSpec,
  type NodeState,
  type NodeStatus,
  nextAttemptAt,
  normalizeNodeSpec,
  openTally,
  type RetryCounts,
  type RetryNodeView,
  type RetryPlan,
  type Run,
  type RunConclusion,
  rfc3339,
  runStatus,
  statusAfterFinish,
  succeeded,
  tallied,
  topology,
  triggerDecision,
  type UpstreamTally,
} from '../../model/index.js';
import type { Metadata } from '../../model/types.js';
import type { RunIdentity } from '../../model/workflows.js';

/**
 * The memory backend's state and every node transition, in one place. All
 * functions are synchronous, so each transition is atomic in the event loop.
 * A transition touches its node and direct dependents only (rule 9); it
 * reports changed nodes through `Hooks` so indexes, counters and streams
 * follow without rescanning.
 */

export interface ClaimRecord extends Claim {
  leaseId: string;
}

/** Shared empty output: a node's liveOutput is reset on every claim and finish, and a new typed array each time is measurable garbage. */
export const NO_BYTES = new Uint8Array(0);

/** A node's counters before its first attempt; shared, as countAttempt returns new counters rather than changing them. */
const NO_RETRIES: RetryCounts = { fail: 0, error: 0 };

export interface NodeRecord {
  run: RunRecord;
  spec: NodeSpec;
  status: NodeStatus;
  attempts: Attempt[];
  /** Attempts per retryable conclusion, what rule 5 decides from. */
  retries: RetryCounts;
  startedAt: number;
  finishedAt: number;
  inputs: Record<string, Uint8Array>;
  claim?: ClaimRecord;
  upstream: NodeRecord[];
  downstream: NodeRecord[];
  /** How its upstream nodes completed so far: what its trigger decides from (rule 14). */
  tally: UpstreamTally;
  /** Attempts recorded before the run's latest retry (rule 15). */
  attemptsBeforeRetry: number;
  /** The running attempt's streamed output (appendOutput), and the seq its next chunk carries. */
  liveOutput: Uint8Array;
  nextOutputSeq: number;
  /** When a READY node waiting out its retry delay becomes claimable (ms); 0 when it is now. */
  readyAt: number;
}

export interface RunRecord {
  id: string;
  createdAt: number;
  nodes: Map<string, NodeRecord>;
  order: NodeRecord[];
  edges: Edge[];
  counts: Record<NodeStatus, number>;
  cancelled: boolean;
  /** Cancelled by its deadline (rule 13): the run concludes TIMED_OUT. */
  timedOut: boolean;
  /** When the run's deadline passes (ms); 0 without one. */
  deadlineAt: number;
  /** A node completed by a final failure (rule 5), so the run concludes FAIL. */
  failed: boolean;
  /** Names of the nodes that failed for good (rule 19), in the order they failed. */
  failedNodes: string[];
  conclusion?: RunConclusion;
  /** ms since the epoch; 0 until completed. */
  finishedAt: number;
  /** Name, labels, workflow, params, request id: set at start (rule 17). */
  identity?: RunIdentity;
}

export interface Hooks {
  /** Called after every status change, with the status it left (undefined for a new node). */
  statusChanged(node: NodeRecord, from: NodeStatus | undefined): void;
  /** Called after any change a watcher should see (status, attempt, claim). */
  nodeChanged(node: NodeRecord): void;
  claimReleased(node: NodeRecord, claim: ClaimRecord): void;
  runCompleted(run: RunRecord): void;
  /** Called when a READY node's retry delay is over: it is claimable now (rule 5). */
  retryDue(node: NodeRecord): void;
  /** Called after a running attempt's output grew by `chunk` at `offset`. */
  outputAppended(node: NodeRecord, offset: number, chunk: Uint8Array): void;
}

export function createRun(
  id: string,
  createdAt: number,
  spec: { nodes: NodeSpec[]; edges: Edge[]; deadline?: string },
  hooks: Hooks,
): RunRecord {
  const run: RunRecord = {
    id,
    createdAt,
    nodes: new Map(),
    order: [],
    edges: spec.edges.map((e) => ({ ...e })),
    counts: emptyNodeCounts(),
    cancelled: false,
    timedOut: false,
    deadlineAt: deadlineAt(spec, createdAt) ?? 0,
    finishedAt: 0,
    failed: false,
    failedNodes: [],
  };
  const topo = topology(spec);
  for (const s of spec.nodes.map(normalizeNodeSpec)) {
    const upCount = topo.upstream.get(s.name)!.length;
    const node: NodeRecord = {
      run,
      spec: s,
      status: initialStatus(upCount),
      attempts: [],
      retries: NO_RETRIES,
      startedAt: 0,
      finishedAt: 0,
      inputs: {},
      upstream: [],
      downstream: [],
      tally: openTally(upCount),
      attemptsBeforeRetry: 0,
      liveOutput: NO_BYTES,
      nextOutputSeq: 0,
      readyAt: 0,
    };
    run.nodes.set(s.name, node);
    run.order.push(node);
  }
  for (const e of spec.edges) {
    const src = run.nodes.get(e.source)!;
    const dst = run.nodes.get(e.destination)!;
    src.downstream.push(dst);
    dst.upstream.push(src);
  }
  for (const node of run.order) {
    run.counts[node.status]++;
    hooks.statusChanged(node, undefined);
  }
  return run;
}

function setStatus(node: NodeRecord, to: NodeStatus, now: number, hooks: Hooks): void {
  const from = node.status;
  node.status = to;
  node.run.counts[from]--;
  node.run.counts[to]++;
  if (to === 'COMPLETED') node.finishedAt = now;
  hooks.statusChanged(node, from);
}

function releaseClaim(node: NodeRecord, hooks: Hooks): void {
  const claim = node.claim;
  if (!claim) return;
  node.claim = undefined;
  hooks.claimReleased(node, claim);
}

function completeIfDone(run: RunRecord, now: number, hooks: Hooks): void {
  if (run.conclusion || run.counts.COMPLETED !== run.order.length) return;
  run.conclusion = conclusionOf(run);
  run.finishedAt = now;
  hooks.runCompleted(run);
}

/** Rule 2 / rule 3's recovery. Returns undefined when the node is neither READY nor orphaned. */
export function claimNode(
  node: NodeRecord,
  claim: ClaimRecord,
  now: number,
  hooks: Hooks,
): { orphan: boolean; previousClaimId?: string; previousAgentId?: string } | undefined {
  if (node.status === 'READY') {
    if (!claimable(node.readyAt, now)) return undefined;
    startAttempt(node, claim, now, hooks);
    return { orphan: false };
  }
  if (node.status === 'RUNNING' && node.claim?.orphaned) {
    const { id: previousClaimId, agentId: previousAgentId } = node.claim;
    releaseClaim(node, hooks);
    node.claim = claim;
    hooks.nodeChanged(node);
    return { orphan: true, previousClaimId, previousAgentId };
  }
  return undefined;
}

/** A claimable node (READY, or a dependent a finish makes READY and hands off) RUNNING under the claim. */
function startAttempt(node: NodeRecord, claim: ClaimRecord, now: number, hooks: Hooks): void {
  node.claim = claim;
  node.startedAt = now;
  node.finishedAt = 0;
  const inputs: Record<string, Uint8Array> = {};
  for (const up of node.upstream)
    if (succeeded(up)) inputs[up.spec.name] = up.attempts[up.attempts.length - 1]!.output;
  node.inputs = inputs;
  node.liveOutput = NO_BYTES;
  node.nextOutputSeq = 0;
  setStatus(node, 'RUNNING', now, hooks);
  hooks.nodeChanged(node);
}

/**
 * Rule 21: picks the claim (if any) under which a dependent the finish makes
 * READY goes straight to RUNNING for the finishing process.
 */
export type HandOffPick = (node: NodeRecord) => ClaimRecord | undefined;

/** Rule 3: the holder's lease lapsed. */
export function orphanNode(node: NodeRecord, hooks: Hooks): void {
  if (node.status !== 'RUNNING' || !node.claim || node.claim.orphaned) return;
  node.claim = { ...node.claim, orphaned: true };
  hooks.nodeChanged(node);
}

/** Rules 4 and 5. Returns false when the claim is stale (not the node's live claim). */
export function finishNode(
  node: NodeRecord,
  claimId: string,
  conclusion: Exclude<AttemptConclusion, 'CANCELLED'>,
  output: Uint8Array,
  metadata: Metadata,
  now: number,
  hooks: Hooks,
  /** When the holder says the work started (rule 20). */
  reportedStart?: number,
  handOff?: HandOffPick,
): boolean {
  const claim = node.claim;
  if (!holds(node, claimId)) return false;
  const outcome = finishOutcome(node.spec, conclusion, node.retries);
  if (outcome === 'RETRY' && conclusion !== 'SUCCESS')
    node.readyAt = nextAttemptAt(node.spec, conclusion, node.retries, now);
  node.retries = countAttempt(node.retries, conclusion);
  node.attempts = [
    ...node.attempts,
    {
      conclusion,
      metadata,
      output: attemptOutput(node.liveOutput, output),
      claimId,
      agentId: claim!.agentId,
      startedAt: rfc3339(attemptStartMs(node.startedAt, now, reportedStart)),
      finishedAt: rfc3339(now),
    },
  ];
  releaseClaim(node, hooks);
  node.liveOutput = NO_BYTES;
  // Before the status change: the run's last change must carry its conclusion.
  if (outcome === 'FAILED') {
    node.run.failed = true;
    node.run.failedNodes.push(node.spec.name);
  }
  setStatus(node, statusAfterFinish(outcome), now, hooks);
  hooks.nodeChanged(node);
  if (outcome !== 'RETRY') settleDependents(node, now, hooks, handOff);
  completeIfDone(node.run, now, hooks);
  return true;
}

/** Rule 4's fence: the node is RUNNING under this claim, not orphaned (finish, release, claimsHeld). */
export function holds(node: NodeRecord | undefined, claimId: string): boolean {
  return node?.status === 'RUNNING' && node.claim?.id === claimId && !node.claim.orphaned;
}

/**
 * Rule 20: a claim whose work never started is given back. The node is READY
 * again at once (claimable, announced), no attempt is recorded and its
 * attempt number stays; what it streamed (nothing, normally) is dropped.
 * Returns false, changing nothing, when the claim no longer holds the node.
 */
export function releaseNode(node: NodeRecord, claimId: string, now: number, hooks: Hooks): boolean {
  if (!holds(node, claimId)) return false;
  releaseClaim(node, hooks);
  node.liveOutput = NO_BYTES;
  node.nextOutputSeq = 0;
  node.readyAt = 0;
  setStatus(node, 'READY', now, hooks);
  hooks.nodeChanged(node);
  return true;
}

/** Rule 5's delay over: a READY node waiting out its retry delay becomes claimable. Returns whether it did. */
export function releaseRetry(node: NodeRecord, now: number, hooks: Hooks): boolean {
  if (node.status !== 'READY' || !node.readyAt || !claimable(node.readyAt, now)) return false;
  node.readyAt = 0;
  hooks.retryDue(node);
  hooks.nodeChanged(node);
  return true;
}

/**
 * Rule 14: each dependent of a node that completed counts it in and its
 * trigger decides: READY, still WAITING, or completed unreached, which in
 * turn settles its own dependents. Each node completes once, so the walk
 * costs O(1) amortised per edge over the run's life (rule 9).
 */
function settleDependents(from: NodeRecord, now: number, hooks: Hooks, handOff?: HandOffPick): void {
  const queue = [from];
  for (let i = 0; i < queue.length; i++) {
    const up = queue[i]!;
    // Its own attempt for the node that finished; neither for one completed unreached here (its last attempt,
    // if any, is from before a retry put it back).
    const outcome = completedOutcome(up);
    for (const d of up.downstream) {
      // Judged already: completed unreached at once, or (a retry) left as it was.
      if (d.status !== 'WAITING') continue;
      d.tally = tallied(d.tally, outcome);
      const decision = triggerDecision(d.spec.trigger, d.tally);
      if (decision === 'WAIT') continue;
      // Rule 21: taken by the finishing process, it goes to RUNNING unannounced.
      const claim = decision === 'READY' ? handOff?.(d) : undefined;
      if (claim) {
        startAttempt(d, claim, now, hooks);
        continue;
      }
      setStatus(d, decision === 'READY' ? 'READY' : 'COMPLETED', now, hooks);
      hooks.nodeChanged(d);
      if (decision === 'UNREACHED') queue.push(d);
    }
  }
}

/**
 * Rule 15: puts the plan's nodes back (attempts kept, retry budgets counted
 * from now), clears the run's completion, and settles the nodes that went
 * back COMPLETED. The caller checked the run may be retried.
 */
export function retryRun(run: RunRecord, plan: RetryPlan, now: number, hooks: Hooks): void {
  run.cancelled = false;
  // Rule 13: a retried run may conclude again, and runs on without a deadline (the retry lifts it).
  run.timedOut = false;
  run.deadlineAt = 0;
  run.failed = plan.failed;
  // Rule 19: the nodes put back are no longer failed; the list names them again only if they fail again.
  const back = new Set(plan.nodes.map((p) => p.name));
  run.failedNodes = run.failedNodes.filter((name) => !back.has(name));
  run.conclusion = undefined;
  run.finishedAt = 0;
  for (const p of plan.nodes) {
    const node = run.nodes.get(p.name)!;
    node.tally = p.tally;
    node.retries = { fail: 0, error: 0 };
    node.attemptsBeforeRetry = p.attemptsBeforeRetry;
    node.inputs = {};
    node.startedAt = 0;
    // Rule 5: a node put back is claimable at once, whatever delay its last retry was waiting out.
    node.readyAt = 0;
    if (p.status !== 'COMPLETED') node.finishedAt = 0;
    if (node.status !== p.status) setStatus(node, p.status, now, hooks);
    else if (p.status === 'COMPLETED') node.finishedAt = now;
    hooks.nodeChanged(node);
  }
  completeIfDone(run, now, hooks);
}

/** What planRetry needs of a node. */
export function retryView(node: NodeRecord): RetryNodeView {
  return {
    name: node.spec.name,
    trigger: node.spec.trigger,
    status: node.status,
    last: node.attempts[node.attempts.length - 1]?.conclusion,
    attempts: node.attempts.length,
    attemptsBeforeRetry: node.attemptsBeforeRetry,
  };
}

/** Rule 6 (and 13: `timedOut` when its deadline cancels it). Returns false when the run had already completed. */
export function cancelRun(run: RunRecord, now: number, hooks: Hooks, timedOut = false): boolean {
  if (run.conclusion) return false;
  run.cancelled = true;
  run.timedOut = timedOut;
  for (const node of run.order) {
    if (node.status === 'COMPLETED') continue;
    if (node.status === 'RUNNING' && node.claim) {
      node.attempts = [
        ...node.attempts,
        cancelledAttempt(
          { claimId: node.claim.id, agentId: node.claim.agentId },
          node.startedAt,
          now,
          node.liveOutput,
        ),
      ];
      releaseClaim(node, hooks);
      node.liveOutput = NO_BYTES;
    }
    setStatus(node, 'COMPLETED', now, hooks);
    hooks.nodeChanged(node);
  }
  completeIfDone(run, now, hooks);
  return true;
}

/**
 * Appends a chunk of the running attempt's output. 'stale' when the claim is
 * not the node's live claim; 'gap' when chunks before `seq` are missing; a
 * chunk already appended is ignored.
 */
export function appendNodeOutput(
  node: NodeRecord,
  claimId: string,
  seq: number,
  chunk: Uint8Array,
  hooks: Hooks,
): 'ok' | 'stale' | 'gap' {
  const claim = node.claim;
  if (node.status !== 'RUNNING' || !claim || claim.id !== claimId || claim.orphaned) return 'stale';
  if (seq < node.nextOutputSeq) return 'ok';
  if (seq > node.nextOutputSeq) return 'gap';
  node.nextOutputSeq++;
  const delta = boundedAppend(node.liveOutput.byteLength, chunk);
  if (delta.byteLength === 0) return 'ok';
  const offset = node.liveOutput.byteLength;
  node.liveOutput = concatBytes([node.liveOutput, delta]);
  hooks.outputAppended(node, offset, delta);
  return 'ok';
}

export function nodeSnapshot(node: NodeRecord): NodeState {
  const c = node.claim;
  return {
    spec: node.spec,
    status: node.status,
    attempts: node.attempts,
    startedAt: node.startedAt ? rfc3339(node.startedAt) : '',
    finishedAt: node.finishedAt ? rfc3339(node.finishedAt) : '',
    inputs: node.inputs,
    claim: c ? { id: c.id, agentId: c.agentId, metadata: c.metadata, orphaned: c.orphaned } : undefined,
    liveOutput: node.liveOutput.byteLength > 0 ? node.liveOutput : undefined,
    ...(node.status === 'READY' && node.readyAt ? { nextAttemptAt: rfc3339(node.readyAt) } : {}),
    ...(node.attemptsBeforeRetry > 0 ? { attemptsBeforeRetry: node.attemptsBeforeRetry } : {}),
  };
}

export function runSnapshot(run: RunRecord): Run {
  return {
    id: run.id,
    createdAt: rfc3339(run.createdAt),
    nodes: run.order.map(nodeSnapshot),
    edges: run.edges.map((e) => ({ ...e })),
    status: runStatus(run.counts),
    conclusion: run.conclusion,
    finishedAt: run.finishedAt ? rfc3339(run.finishedAt) : undefined,
    ...(run.deadlineAt ? { deadlineAt: rfc3339(run.deadlineAt) } : {}),
    ...structuredClone(run.identity),
  };
}
