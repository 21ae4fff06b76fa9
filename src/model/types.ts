/**
 * Domain types of Adagio. Plain data: the wire form lives in src/gen and is
 * converted at process boundaries (see wire.ts).
 */

/** Arguments and annotations: name → list of strings. */
export type Metadata = Record<string, string[]>;

export type RetryConclusion = 'fail' | 'error';
export const RETRY_CONCLUSIONS: readonly RetryConclusion[] = ['fail', 'error'];

export interface RetrySpec {
  /** Attempts of this conclusion allowed in total (1 means no retry). */
  maxAttempts: number;
  /** The delay before each retry; absent means at once. */
  backoff?: Backoff;
}

/**
 * A retry's delay (rules.ts retryDelayMs): initial * factor^(retry - 1),
 * capped at max, spread by up to ±jitter of itself. Durations as written
 * ("1s", "1m30s"); validate.ts checks them.
 */
export interface Backoff {
  initial: string;
  /** 1 or more; absent means 1 (a constant delay). */
  factor?: number;
  /** Absent means no cap. */
  max?: string;
  /** 0 to 1; absent means 0. */
  jitter?: number;
}

/**
 * When a node with upstream nodes runs (rule 14), judged from how they
 * completed; absent means all_success.
 */
export type TriggerRule =
  | 'all_success'
  | 'all_done'
  | 'all_failed'
  | 'one_failed'
  | 'one_success'
  | 'none_failed';
export const TRIGGER_RULES: readonly TriggerRule[] = [
  'all_success',
  'all_done',
  'all_failed',
  'one_failed',
  'one_success',
  'none_failed',
];
export const DEFAULT_TRIGGER: TriggerRule = 'all_success';

export interface NodeSpec {
  name: string;
  runtime: string;
  metadata: Metadata;
  retry: Partial<Record<RetryConclusion, RetrySpec>>;
  /** How long one attempt may run ("30m"); absent means no limit (or the agent's default). */
  timeout?: string;
  /** Absent: all_success (a stored spec leaves the default out). */
  trigger?: TriggerRule;
}

export interface Edge {
  source: string;
  destination: string;
}

export interface GraphSpec {
  nodes: NodeSpec[];
  edges: Edge[];
  /** How long the whole run may take ("2h"); absent means no limit. */
  deadline?: string;
}

export type NodeStatus = 'WAITING' | 'READY' | 'RUNNING' | 'COMPLETED';
export type AttemptConclusion = 'SUCCESS' | 'FAIL' | 'ERROR' | 'CANCELLED';
export type RunStatus = 'WAITING' | 'RUNNING' | 'COMPLETED';
export type RunConclusion = 'SUCCESS' | 'FAIL' | 'CANCELLED' | 'TIMED_OUT';

export interface Attempt {
  conclusion: AttemptConclusion;
  metadata: Metadata;
  output: Uint8Array;
  claimId: string;
  agentId: string;
  /** RFC 3339; empty when the attempt never started (e.g. cancelled before claim). */
  startedAt: string;
  finishedAt: string;
  /** Set when a read left the output out (over its output budget): the output's length in bytes; `output` is then empty. */
  omittedOutputBytes?: number;
}

export interface Claim {
  id: string;
  agentId: string;
  metadata: Metadata;
  /** True once the holder's lease lapsed and no agent has recovered the node yet. */
  orphaned: boolean;
}

export interface NodeState {
  spec: NodeSpec;
  status: NodeStatus;
  attempts: Attempt[];
  /** RFC 3339 of the latest claim, empty before the first. */
  startedAt: string;
  finishedAt: string;
  /** Upstream node name → its last successful output; filled at claim. */
  inputs: Record<string, Uint8Array>;
  /**
   * Inputs a read left out of `inputs` by its output budget (withOutputBudget),
   * name → size in bytes: each is its upstream node's output, read there.
   */
  omittedInputBytes?: Record<string, number>;
  claim?: Claim;
  /**
   * What the running attempt streamed so far (Repository.appendOutput), as
   * inspect and watch report it; unset when the node is not RUNNING or nothing
   * was streamed. The attempt records it
   * when it ends, however it ends.
   */
  liveOutput?: Uint8Array;
  /** RFC 3339 of when a READY node waiting out its retry delay becomes claimable; unset otherwise. */
  nextAttemptAt?: string;
  /** Attempts recorded before the run's latest retry (rule 15): the retry budgets count those after. 0 when never retried. */
  attemptsBeforeRetry?: number;
}

export interface Run extends RunIdentity {
  id: string;
  /** RFC 3339. */
  createdAt: string;
  nodes: NodeState[];
  edges: Edge[];
  status: RunStatus;
  conclusion?: RunConclusion;
  /** RFC 3339 of when it completed (its last node completed, or it was cancelled); empty before. */
  finishedAt?: string;
  /** RFC 3339 of when its graph's deadline passes; unset when it has none. */
  deadlineAt?: string;
}

/** A run without its nodes: what lists show (its identity without params). */
export interface RunSummary extends Omit<RunIdentity, 'params'> {
  id: string;
  createdAt: string;
  status: RunStatus;
  conclusion?: RunConclusion;
  finishedAt?: string;
  nodeCounts: Record<NodeStatus, number>;
  /** Rule 19: names of nodes that failed for good, sorted, at most LIMITS.maxListedFailedNodes. */
  failedNodes: string[];
  /** How many nodes failed for good in all (failedNodes may name fewer). */
  failedNodeCount: number;
}

export interface RuntimeInfo {
  name: string;
}

export interface AgentInfo {
  id: string;
  runtimes: RuntimeInfo[];
  startedAt: string;
  hostname: string;
}

export interface Stats {
  runCount: number;
  nodeCounts: Record<NodeStatus, number>;
}

export function emptyNodeCounts(): Record<NodeStatus, number> {
  return { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 };
}

/** Run labels: key → value. */
export type Labels = Record<string, string>;
/** The params a run got, defaults filled in. */
export type Params = Record<string, string>;

/** How a run came to be: set at start, never changed (rule 17). */
export interface RunIdentity {
  /** The run's name: given at start, else its workflow's name, else empty. */
  name?: string;
  labels?: Labels;
  /** The workflow and version it was started from (none for a graph start). */
  workflow?: string;
  workflowVersion?: number;
  params?: Params;
  /** The request id it was started with: a start repeating it returns this run. */
  requestId?: string;
}
