import {
  type AgentInfo,
  type Clock,
  checkAgentRegistration,
  checkClaimRefs,
  checkConclusion,
  checkHandOff,
  checkId,
  checkListLimit,
  checkMetadata,
  checkNodeName,
  checkRetryable,
  checkRetryNodes,
  checkRunFilter,
  checkRunId,
  checkStartedAt,
  checkStartOptions,
  decodeCursor,
  emptyNodeCounts,
  encodeCursor,
  failedNodesSummary,
  type GraphSpec,
  handOffPlace,
  type IdSource,
  type NodeStatus,
  planRetry,
  planStart,
  type Run,
  type RunSummary,
  rfc3339,
  runMatches,
  runStatus,
  type Stats,
  systemClock,
  timedOut,
  timeoutFinish,
  topology,
  ulidSource,
  type WorkflowDefinition,
  type WorkflowInput,
  type WorkflowSummary,
} from '../../model/index.js';
import type { Schedule, ScheduleInput, ScheduleStep } from '../../model/schedules.js';
import type { Metadata } from '../../model/types.js';
import {
  type AgentRegistration,
  type AppendOutputRequest,
  type ClaimedNode,
  type ClaimRef,
  type ClaimRequest,
  checkSeq,
  claimNotLive,
  DEFAULT_LEASE_TTL_MS,
  type FinishRequest,
  type FinishResult,
  type Lease,
  type ListRunsQuery,
  type NodeEvent,
  NotFoundError,
  nodeNotFound,
  type Repository,
  type RunPage,
  type StartOptions,
  type SubscribeOptions,
  seqGapError,
  UnavailableError,
  type WatchEvent,
} from '../../protocol/index.js';
import { Schedules } from '../schedules.js';
import { MemoryLeases } from './leases.js';
import { MemoryScheduleStore } from './schedules.js';
import {
  appendNodeOutput,
  type ClaimRecord,
  cancelRun,
  claimNode,
  createRun,
  finishNode,
  type HandOffPick,
  type Hooks,
  holds,
  NO_BYTES,
  type NodeRecord,
  nodeSnapshot,
  orphanNode,
  type RunRecord,
  releaseNode,
  releaseRetry,
  retryRun,
  retryView,
  runSnapshot,
} from './state.js';
import { MemoryStreams } from './streams.js';
import { MemoryWorkflows } from './workflows.js';

export interface MemoryRepositoryOptions {
  clock?: Clock;
  ids?: IdSource;
  /** How often lapsed leases are looked for; 0 disables the timer (tests then call expireLapsedLeases). */
  leaseCheckIntervalMs?: number;
}

/**
 * The embedded backend: all state in this process, transitions in state.ts,
 * leases and agents in leases.ts, subscribe and watch in streams.ts.
 * Indexes (READY/orphaned nodes per runtime, claims per lease, runs in id
 * order) keep every operation proportional to what it touches.
 */
export class MemoryRepository implements Repository {
  /** Rule 21: one synchronous step judges and claims. */
  readonly handsOff: boolean = true;

  private readonly clock: Clock;
  private readonly ids: IdSource;
  private readonly runs = new Map<string, RunRecord>();
  /** Runs in creation (= id) order. */
  private runList: RunRecord[] = [];
  private readonly leases: MemoryLeases;
  private readonly streams = new MemoryStreams();
  private readonly nodeCounts = emptyNodeCounts();
  private readonly timer?: NodeJS.Timeout;
  private closed = false;
  private readonly hooks: Hooks;
  /** READY nodes waiting out a retry delay (rule 5), released by sweepTimers. */
  private readonly delayed = new Set<NodeRecord>();
  /** Claimed nodes that have a timeout (rule 11), ended by sweepTimers when it passes. */
  private readonly timed = new Set<NodeRecord>();
  /** Open runs with a deadline (rule 13), cancelled TIMED_OUT by sweepTimers when it passes. */
  private readonly deadlines = new Set<RunRecord>();
  private readonly workflows: MemoryWorkflows;
  private readonly scheduleStore: MemoryScheduleStore;
  private readonly schedules: Schedules;
  /** Request id → the run its start created (rule 17); an entry goes with its run. */
  private readonly requests = new Map<string, string>();

  constructor(options: MemoryRepositoryOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.ids = options.ids ?? ulidSource();
    this.workflows = new MemoryWorkflows(this.clock, (name) => this.workflowInUse(name));
    this.scheduleStore = new MemoryScheduleStore(this.workflows);
    this.schedules = new Schedules(this.scheduleStore, this.clock);
    this.leases = new MemoryLeases(this.clock, this.ids, (node) => orphanNode(node, this.hooks));
    const interval = options.leaseCheckIntervalMs ?? 100;
    if (interval > 0) {
      this.leases.ticked(interval);
      this.timer = setInterval(() => {
        this.leases.ticked(interval);
        this.expireLapsedLeases();
        this.sweepTimers();
      }, interval);
      this.timer.unref();
    }
    this.hooks = {
      statusChanged: (node, from) => {
        if (from) this.nodeCounts[from]--;
        this.nodeCounts[node.status]++;
        if (node.status === 'READY' && node.readyAt) this.delayed.add(node);
        this.streams.statusChanged(node, from);
      },
      retryDue: (node) => this.streams.retryDue(node),
      nodeChanged: (node) => this.streams.nodeChanged(node),
      claimReleased: (node, claim) => {
        this.leases.released(claim.leaseId, node);
        this.streams.claimReleased(node, claim);
      },
      runCompleted: () => {},
      outputAppended: (node, offset, chunk) => this.streams.outputAppended(node, offset, chunk),
    };
  }

  // ---- runs

  /** Synchronous from the request-id lookup to the store of the new run, so concurrent duplicates make one run. */
  async start(spec: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    this.assertOpen();
    checkStartOptions(spec, options);
    const earlier = options.requestId !== undefined ? this.requests.get(options.requestId) : undefined;
    if (earlier !== undefined) return runSnapshot(this.getRun(earlier));
    const definition = options.workflow ? this.workflows.get(options.workflow, options.version) : undefined;
    const plan = planStart(spec, options, definition);
    const now = this.clock.now();
    const run = createRun(this.ids.next(now), now, plan.spec, this.hooks);
    run.identity = plan.identity;
    this.runs.set(run.id, run);
    this.runList.push(run);
    if (run.deadlineAt) this.deadlines.add(run);
    if (plan.identity.requestId !== undefined) this.requests.set(plan.identity.requestId, run.id);
    return runSnapshot(run);
  }

  // ---- workflows (rule 16)

  async putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    this.assertOpen();
    return this.workflows.put(name, input);
  }

  async getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    this.assertOpen();
    return this.workflows.get(name, version);
  }

  async listWorkflows(): Promise<WorkflowSummary[]> {
    this.assertOpen();
    return this.workflows.list();
  }

  async listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    this.assertOpen();
    return this.workflows.versions(name);
  }

  async deleteWorkflow(name: string): Promise<void> {
    this.assertOpen();
    this.workflows.delete(name);
  }

  /**
   * What still uses the workflow, named for the refusal (e.g. `schedule
   * "nightly"`), or undefined. Delete is refused while it answers.
   */
  protected workflowInUse(name: string): string | undefined {
    return this.scheduleStore.usedBy(name);
  }

  // ---- schedules (rule 18)

  putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    this.assertOpen();
    return this.schedules.put(name, input);
  }

  getSchedule(name: string): Promise<Schedule> {
    this.assertOpen();
    return this.schedules.get(name);
  }

  listSchedules(): Promise<Schedule[]> {
    this.assertOpen();
    return this.schedules.list();
  }

  deleteSchedule(name: string): Promise<void> {
    this.assertOpen();
    return this.schedules.delete(name);
  }

  pauseSchedule(name: string, paused: boolean): Promise<Schedule> {
    this.assertOpen();
    return this.schedules.pause(name, paused);
  }

  advanceSchedule(name: string, step: ScheduleStep): Promise<boolean> {
    this.assertOpen();
    return this.schedules.advance(name, step);
  }

  async inspect(runId: string): Promise<Run> {
    this.assertOpen();
    checkRunId(runId);
    return runSnapshot(this.getRun(runId));
  }

  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    this.assertOpen();
    const limit = checkListLimit(query.limit);
    checkRunFilter(query);
    const cursor = query.cursor ? decodeCursor(query.cursor) : undefined;
    const list = this.runList;
    // Upper bound (exclusive) as an index: the until window, then the cursor.
    let end = list.length;
    if (query.until !== undefined) end = lowerBound(list, (r) => r.createdAt < query.until!);
    if (cursor)
      end = Math.min(
        end,
        lowerBound(list, (r) => r.id < cursor.runId),
      );
    const runs = [];
    let i = end - 1;
    // The last run looked at: the next page starts below it, matched or not.
    let last: RunRecord | undefined;
    for (; i >= 0 && runs.length < limit; i--) {
      const r = list[i]!;
      if (query.since !== undefined && r.createdAt < query.since) break;
      last = r;
      const summary = summarize(r);
      if (runMatches(summary, query)) runs.push(summary);
    }
    const more = i >= 0 && (query.since === undefined || list[i]!.createdAt >= query.since);
    return {
      runs,
      nextCursor: more && last ? encodeCursor(last.createdAt, last.id) : undefined,
    };
  }

  async stats(): Promise<Stats> {
    this.assertOpen();
    return { runCount: this.runs.size, nodeCounts: { ...this.nodeCounts } };
  }

  async cancel(runId: string): Promise<Run> {
    this.assertOpen();
    checkRunId(runId);
    const run = this.getRun(runId);
    cancelRun(run, this.clock.now(), this.hooks);
    return runSnapshot(run);
  }

  async retry(runId: string, nodes?: string[]): Promise<Run> {
    this.assertOpen();
    checkRunId(runId);
    checkRetryNodes(nodes);
    const run = this.getRun(runId);
    checkRetryable(runId, { status: runStatus(run.counts), conclusion: run.conclusion });
    const plan = planRetry(
      runId,
      run.order.map(retryView),
      topology({ nodes: run.order.map((n) => n.spec), edges: run.edges }),
      nodes,
    );
    retryRun(run, plan, this.clock.now(), this.hooks);
    return runSnapshot(run);
  }

  async deleteCompletedRunsBefore(ms: number): Promise<number> {
    this.assertOpen();
    const keep: RunRecord[] = [];
    let deleted = 0;
    for (const run of this.runList) {
      if (run.conclusion && run.createdAt < ms) {
        this.runs.delete(run.id);
        if (run.identity?.requestId !== undefined) this.requests.delete(run.identity.requestId);
        for (const s of Object.keys(run.counts) as NodeStatus[]) this.nodeCounts[s] -= run.counts[s];
        deleted++;
      } else keep.push(run);
    }
    this.runList = keep;
    return deleted;
  }

  // ---- leases and agents

  async grantLease(ttlMs = DEFAULT_LEASE_TTL_MS): Promise<Lease> {
    this.assertOpen();
    return this.leases.grant(ttlMs);
  }

  async keepAlive(leaseId: string): Promise<void> {
    this.assertOpen();
    checkId('lease id', leaseId);
    this.leases.keepAlive(leaseId);
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.assertOpen();
    this.leases.revoke(leaseId);
  }

  async registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    this.assertOpen();
    checkId('lease id', leaseId);
    checkAgentRegistration(agent);
    return this.leases.register(leaseId, agent);
  }

  async deregisterAgent(agentId: string): Promise<void> {
    this.assertOpen();
    this.leases.deregister(agentId);
  }

  async listAgents(): Promise<AgentInfo[]> {
    this.assertOpen();
    return this.leases.list();
  }

  /** Orphans the claims of every lease past its expiry. Runs on a timer; public so tests with a manual clock can drive it. */
  expireLapsedLeases(): void {
    this.leases.expireLapsed();
  }

  /**
   * Makes claimable (and announces) the READY nodes whose retry delay is over.
   * Runs on the lease timer; public so tests with a manual clock can drive it.
   */
  sweepTimers(): void {
    const now = this.clock.now();
    for (const node of this.delayed)
      if (node.status !== 'READY' || !node.readyAt || releaseRetry(node, now, this.hooks))
        this.delayed.delete(node);
    for (const node of this.timed) {
      if (node.status !== 'RUNNING') this.timed.delete(node);
      // An orphan waits for its recovery claim, which records the ERROR itself (rule 3).
      else if (node.claim && !node.claim.orphaned && timedOut(node.spec, node.startedAt, now)) {
        const f = timeoutFinish(node.spec);
        finishNode(node, node.claim.id, f.conclusion, f.output, f.metadata, now, this.hooks);
        this.timed.delete(node);
      }
    }
    for (const run of this.deadlines) {
      // Concluded, or retried since (a retry lifts the deadline: 0).
      if (run.conclusion || !run.deadlineAt) this.deadlines.delete(run);
      else if (run.deadlineAt <= now) {
        cancelRun(run, now, this.hooks, true);
        this.deadlines.delete(run);
      }
    }
  }

  // ---- claims

  async claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    this.assertOpen();
    checkRunId(request.runId);
    checkNodeName(request.node);
    checkMetadata(request.metadata);
    const leaseId = this.leases.check(request.leaseId);
    const node = this.getNode(request.runId, request.node);
    const claim = this.newClaim(leaseId, request.agentId, request.metadata ?? {});
    const won = claimNode(node, claim, this.clock.now(), this.hooks);
    if (!won) return undefined;
    this.claimed(node);
    return { ...claimedNode(node, claim), ...won };
  }

  private newClaim(leaseId: string, agentId: string, metadata: Metadata): ClaimRecord {
    return { id: this.ids.next(this.clock.now()), agentId, metadata, orphaned: false, leaseId };
  }

  private claimed(node: NodeRecord): void {
    this.leases.held(node.claim!.leaseId, node);
    if (node.spec.timeout) this.timed.add(node);
  }

  async finish(request: FinishRequest): Promise<FinishResult> {
    this.assertOpen();
    checkRunId(request.runId);
    checkNodeName(request.node);
    checkConclusion(request.conclusion);
    checkMetadata(request.metadata);
    checkStartedAt(request.startedAt);
    const handOff = request.handOff && checkHandOff(request.handOff);
    const node = this.getNode(request.runId, request.node);
    // Rule 21: only under a live lease; a lapsed one takes nothing and the finish stands alone.
    const live = handOff !== undefined && this.leases.isLive(handOff.leaseId);
    const taken: { node: NodeRecord; claim: ClaimRecord }[] = [];
    const pick: HandOffPick | undefined = live
      ? (d) => {
          const agentId = handOffPlace(handOff, taken.length, d.spec.runtime);
          if (agentId === undefined) return undefined;
          const claim = this.newClaim(handOff.leaseId, agentId, {});
          taken.push({ node: d, claim });
          return claim;
        }
      : undefined;
    const ok = finishNode(
      node,
      request.claimId,
      request.conclusion,
      request.output ?? NO_BYTES,
      request.metadata ?? {},
      this.clock.now(),
      this.hooks,
      request.startedAt,
      pick,
    );
    if (!ok)
      throw claimNotLive(request, {
        status: node.status,
        orphaned: node.claim?.id === request.claimId && node.claim.orphaned,
        cancelled: node.run.cancelled,
      });
    for (const t of taken) this.claimed(t.node);
    return { handedOff: taken.map((t) => ({ ...claimedNode(t.node, t.claim), orphan: false })) };
  }

  async claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    this.assertOpen();
    return claims.map((c) => holds(this.runs.get(c.runId)?.nodes.get(c.node), c.claimId));
  }

  async release(claims: ClaimRef[]): Promise<boolean[]> {
    this.assertOpen();
    checkClaimRefs(claims);
    const now = this.clock.now();
    return claims.map((c) => {
      const node = this.runs.get(c.runId)?.nodes.get(c.node);
      return node !== undefined && releaseNode(node, c.claimId, now, this.hooks);
    });
  }

  async appendOutput(request: AppendOutputRequest): Promise<void> {
    this.assertOpen();
    checkSeq(request.seq);
    const node = this.getNode(request.runId, request.node);
    const result = appendNodeOutput(node, request.claimId, request.seq, request.chunk, this.hooks);
    if (result === 'gap') throw seqGapError(request, node.nextOutputSeq);
    if (result === 'stale')
      throw claimNotLive(request, {
        status: node.status,
        orphaned: node.claim?.id === request.claimId && node.claim.orphaned,
        cancelled: node.run.cancelled,
      });
  }

  // ---- streams

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    this.assertOpen();
    return this.streams.subscribe(options);
  }

  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    this.assertOpen();
    checkRunId(runId);
    return this.streams.watch(this.getRun(runId), options);
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.streams.close();
  }

  private getRun(runId: string): RunRecord {
    const run = this.runs.get(runId);
    if (!run) throw new NotFoundError('run', runId);
    return run;
  }

  private getNode(runId: string, name: string): NodeRecord {
    const node = this.getRun(runId).nodes.get(name);
    if (!node) throw nodeNotFound(runId, name);
    return node;
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('memory repository is closed');
  }
}

/** A node just claimed, as its claimer gets it (rules 2 and 21). */
function claimedNode(node: NodeRecord, claim: ClaimRecord): ClaimedNode {
  return {
    runId: node.run.id,
    claimId: claim.id,
    attempt: node.attempts.length + 1,
    orphan: false,
    node: nodeSnapshot(node),
  };
}

function summarize(r: RunRecord): RunSummary {
  const { params: _params, ...identity } = r.identity ?? {};
  return {
    id: r.id,
    createdAt: rfc3339(r.createdAt),
    status: runStatus(r.counts),
    conclusion: r.conclusion,
    finishedAt: r.finishedAt ? rfc3339(r.finishedAt) : undefined,
    nodeCounts: { ...r.counts },
    ...failedNodesSummary(r.failedNodes, r.failedNodes.length),
    ...structuredClone(identity),
  };
}

/** First index whose element does not satisfy `before` (elements satisfying it come first). */
function lowerBound<T>(list: readonly T[], before: (x: T) => boolean): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(list[mid]!)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
