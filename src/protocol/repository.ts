import type { FinishConclusion } from '../model/requests.js';
import type { Schedule, ScheduleInput, ScheduleStep } from '../model/schedules.js';
import type {
  AgentInfo,
  GraphSpec,
  Metadata,
  NodeState,
  Run,
  RunConclusion,
  RunStatus,
  RunSummary,
  RuntimeInfo,
  Stats,
} from '../model/types.js';
import type {
  Labels,
  Params,
  RunFilter,
  WorkflowDefinition,
  WorkflowInput,
  WorkflowSummary,
} from '../model/workflows.js';
import { InvalidArgumentError } from './errors.js';

/**
 * The Repository protocol: the one contract every backend implements
 * (docs/design.md §3). The API and the agents depend on this interface only.
 *
 * Errors: InvalidGraphError (start), NotFoundError (unknown run/node/lease),
 * ClaimConflictError (finish with a stale or foreign claim), LeaseExpiredError
 * (keepAlive/claim on a dead lease), UnavailableError (store unreachable).
 */
export interface Repository {
  /**
   * Rule 1: validates, stores and returns the new run. With `options.workflow`
   * the graph is that workflow's (pass `spec` undefined) with its params
   * substituted (rule 16); with `options.requestId` a repeat of the start
   * returns the run the first one created (rule 17).
   */
  start(spec: GraphSpec | undefined, options?: StartOptions): Promise<Run>;
  inspect(runId: string): Promise<Run>;
  /** Newest first, within the creation-time window, paged by an opaque cursor. */
  listRuns(query?: ListRunsQuery): Promise<RunPage>;
  stats(): Promise<Stats>;
  /**
   * WAITING plus READY nodes, as stats() counts them, for a backend that reads
   * them for less than all of stats() (etcd's stats() also counts every stored
   * run). The API's admission control reads it on the start path; without it,
   * stats().
   */
  queuedNodes?(): Promise<number>;
  /**
   * Rule 21: whether finish may hand off (claim dependents for a finish's
   * `handOff` offer). False: offers are checked and nothing is ever handed
   * off, so a caller need not build them.
   */
  readonly handsOff: boolean;
  /** Rule 6. Idempotent: cancelling a completed run returns it unchanged. */
  cancel(runId: string): Promise<Run>;
  /**
   * Rule 15: resumes a completed run that did not succeed (RunNotRetryableError
   * otherwise): its nodes that did not succeed, or the named ones and every
   * node downstream of them, go back to WAITING/READY with their attempts
   * kept, and the run is RUNNING again under the same id.
   */
  retry(runId: string, nodes?: string[]): Promise<Run>;

  /** A lease binds an agent process's registrations and claims to its liveness (rule 3). */
  grantLease(ttlMs?: number): Promise<Lease>;
  /** Extends the lease by its TTL; LeaseExpiredError when it already lapsed. */
  keepAlive(leaseId: string): Promise<void>;
  /** Ends the lease now: its agents disappear and its claims are orphaned. */
  revokeLease(leaseId: string): Promise<void>;
  registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo>;
  deregisterAgent(agentId: string): Promise<void>;
  /** Live agents only (those whose lease holds). */
  listAgents(): Promise<AgentInfo[]>;

  /**
   * Rule 2 (and rule 3's recovery): claims a READY node, or an orphaned one.
   * Among concurrent claimers exactly one gets a ClaimedNode; the others get
   * undefined. A claimed orphan must be finished with ERROR by its claimer.
   */
  claim(request: ClaimRequest): Promise<ClaimedNode | undefined>;
  /**
   * Rules 4 and 5: appends the attempt, fenced by the claim. With
   * `request.handOff`, rule 21: dependents this finish makes READY may be
   * claimed for the caller in the same transition, and are answered here.
   */
  finish(request: FinishRequest): Promise<FinishResult>;
  /**
   * Which of these claims still hold their node (RUNNING under that claim,
   * not orphaned), in order; unknown runs and nodes hold nothing. An agent
   * asks while attempts run and stops those whose result would be refused:
   * the run was cancelled (rule 6), or the claim lapsed and the node moved on.
   */
  claimsHeld(claims: ClaimRef[]): Promise<boolean[]>;
  /**
   * Rule 20: gives back claims whose work never started (an agent's
   * claimed-ahead queue, on shutdown). Each node RUNNING under a claim that
   * still holds (as claimsHeld answers) goes back to READY at once, with no
   * attempt recorded and its attempt number unchanged, and is announced READY
   * to subscribers (rule 8). A claim that no longer holds is ignored (false):
   * its node has moved on (finished, cancelled, orphaned, claimed again).
   * Answers, in order, which claims were released.
   */
  release(claims: ClaimRef[]): Promise<boolean[]>;
  /**
   * Appends to the running attempt's output, fenced by the claim like finish
   * (ClaimConflictError otherwise). `seq` numbers the chunks of one attempt
   * from 0: a chunk already appended is ignored (a repeat), one past the next
   * expected number is refused (InvalidArgumentError). The attempt's output is
   * capped at LIMITS.maxOutputBytes with the truncation marker; whatever was
   * appended stays the attempt's output when it is cancelled, times out or its
   * agent dies, and finish's output is added after it.
   */
  appendOutput(request: AppendOutputRequest): Promise<void>;

  /** Rule 8: NODE_READY / NODE_ORPHANED for the given runtimes, current and future, until aborted. */
  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent>;
  /** The run now, then each node transition, ending once the run completes or the signal aborts. */
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent>;

  /**
   * Rule 16: stores a new immutable version of the named workflow, or returns
   * the latest version when its content is the same (InvalidGraphError lists
   * every problem of a bad one).
   */
  putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition>;
  /** The latest version, or the given one; NotFoundError (kind workflow) otherwise. */
  getWorkflow(name: string, version?: number): Promise<WorkflowDefinition>;
  /** Every workflow's latest version, by name. */
  listWorkflows(): Promise<WorkflowSummary[]>;
  /** All versions of the named workflow (newest first). */
  listWorkflowVersions(name: string): Promise<WorkflowDefinition[]>;
  /**
   * Deletes every version; NotFoundError when there is none. Refused
   * (ConflictError) while something still uses it: see each backend's
   * workflowInUse hook. Runs started from it are kept.
   */
  deleteWorkflow(name: string): Promise<void>;

  /**
   * Rule 18: stores the named schedule (InvalidArgumentError naming every bad
   * field; NotFoundError for an unknown workflow; its params must suit the
   * workflow). A new schedule fires from the first slot after now; an update
   * keeps its place unless its cron or time zone changed.
   */
  putSchedule(name: string, input: ScheduleInput): Promise<Schedule>;
  /** NotFoundError (kind schedule) when there is none. */
  getSchedule(name: string): Promise<Schedule>;
  /** Every schedule, by name. */
  listSchedules(): Promise<Schedule[]>;
  deleteSchedule(name: string): Promise<void>;
  /** Pauses or resumes; a resumed schedule goes on from its next undecided slot (catch-up applies). */
  pauseSchedule(name: string, paused: boolean): Promise<Schedule>;
  /**
   * Rule 18's compare-and-set: moves the schedule's nextSlot from `step.from`
   * to `step.to` and records the step's slots, only if nextSlot is still
   * `step.from`; false when another scheduler moved it first.
   */
  advanceSchedule(name: string, step: ScheduleStep): Promise<boolean>;

  /** Deletes completed runs created before the given time; returns how many. */
  deleteCompletedRunsBefore(ms: number): Promise<number>;
  /** Resolves when the store answers; UnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export {
  DEFAULT_LEASE_TTL_MS,
  DEFAULT_LIST_LIMIT,
  type FinishConclusion,
  MAX_LIST_LIMIT,
} from '../model/requests.js';

/** How a run is started beyond its graph (rules 16 and 17). */
export interface StartOptions {
  /** Start this workflow (its latest version, or `version`) instead of a graph. */
  workflow?: string;
  version?: number;
  /** Values for the workflow's params; refused without a workflow. */
  params?: Params;
  /** The run's name; default its workflow's name. */
  name?: string;
  labels?: Labels;
  /** A start with a request id used before returns that start's run (while it is kept). */
  requestId?: string;
}

/** Filters (RunFilter: workflow, labels, status, conclusion, search) apply before paging. */
export interface ListRunsQuery extends RunFilter {
  /** Creation window in ms since the epoch: since inclusive, until exclusive. */
  since?: number;
  until?: number;
  /** Page size; default DEFAULT_LIST_LIMIT, at most MAX_LIST_LIMIT. */
  limit?: number;
  /** From a previous page's nextCursor. */
  cursor?: string;
}

export interface RunPage {
  /**
   * With filters a page may hold fewer than `limit` runs (even none) while
   * nextCursor is set: a backend bounds the runs one page examines.
   */
  runs: RunSummary[];
  /** Present when more runs may match. */
  nextCursor?: string;
}

export interface Lease {
  id: string;
  ttlMs: number;
}

export interface AgentRegistration {
  id: string;
  runtimes: RuntimeInfo[];
  hostname?: string;
}

export interface ClaimRequest {
  runId: string;
  node: string;
  leaseId: string;
  agentId: string;
  metadata?: Metadata;
}

export interface ClaimedNode {
  runId: string;
  /** Fencing token and idempotency key of this attempt. */
  claimId: string;
  /** 1-based number of the attempt this claim will record. */
  attempt: number;
  /** True when this claim recovers an orphaned node: finish it with ERROR. */
  orphan: boolean;
  /** The orphaned claim this one replaces, and the agent that held it, when `orphan`. */
  previousClaimId?: string;
  previousAgentId?: string;
  node: NodeState;
}

/** A claim as its holder knows it. */
export interface ClaimRef {
  runId: string;
  node: string;
  claimId: string;
}

export interface FinishRequest {
  runId: string;
  node: string;
  claimId: string;
  conclusion: FinishConclusion;
  output?: Uint8Array;
  metadata?: Metadata;
  /**
   * Rule 20: when the work really started (ms since the epoch, the holder's
   * clock), for a node claimed ahead of a free slot; the store records it as
   * the attempt's start, kept within [claimed at, finished at]. Absent: the
   * claim's time.
   */
  startedAt?: number;
  /** Rule 21: the finishing process can start more work now; claim it some of what this finish makes READY. */
  handOff?: HandOff;
}

/**
 * Rule 21: what a finishing agent process offers to take over at once. The
 * store may claim for it, in the finish's own transition, up to
 * `agentIds.length` of the dependents the finish makes READY whose runtime is
 * in `runtimes`, each under `leaseId` by the agent id at its index, as a
 * claim would; it may also claim none (a lease it cannot confirm live in
 * that transition, a backend that does not hand off).
 */
export interface HandOff {
  leaseId: string;
  /** One per node it may take, in order: their number bounds the hand-off. */
  agentIds: string[];
  runtimes: string[];
}

export interface FinishResult {
  /** Rule 21: the dependents claimed for the caller (with `handOff`; otherwise none). Run or release each. */
  handedOff: ClaimedNode[];
}

/** A finish that handed nothing off. */
export function finishedAlone(): FinishResult {
  return { handedOff: [] };
}

export interface AppendOutputRequest {
  runId: string;
  node: string;
  claimId: string;
  /** 0-based number of this chunk within the attempt. */
  seq: number;
  chunk: Uint8Array;
}

/** A chunk's seq must be a whole number; callers across a process boundary may send anything. */
export function checkSeq(seq: number): void {
  if (!Number.isSafeInteger(seq) || seq < 0)
    throw new InvalidArgumentError(`output seq must be a whole number from 0, got ${JSON.stringify(seq)}`);
}

/** The refusal of a chunk that skips ahead: an appender must send its chunks in order. */
export function seqGapError(req: AppendOutputRequest, next: number): InvalidArgumentError {
  return new InvalidArgumentError(
    `output chunk ${req.seq} of ${req.runId}/${req.node} arrived before chunk ${next}: send chunks in order`,
  );
}

export interface SubscribeOptions {
  runtimes: string[];
  signal: AbortSignal;
}

export interface NodeEvent {
  type: 'NODE_READY' | 'NODE_ORPHANED';
  runId: string;
  node: string;
  runtime: string;
}

export type WatchEvent =
  | { type: 'snapshot'; run: Run }
  | { type: 'node'; runId: string; node: NodeState; runStatus: RunStatus; runConclusion?: RunConclusion }
  | OutputEvent;

/**
 * Bytes a running attempt appended to its output, at `offset` in it. Delivery
 * may repeat a chunk; a reader keeps the bytes past what it already has.
 */
export interface OutputEvent {
  type: 'output';
  runId: string;
  node: string;
  /** 1-based number of the attempt the output belongs to. */
  attempt: number;
  offset: number;
  chunk: Uint8Array;
}
