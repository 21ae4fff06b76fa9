import { hostname as osHostname } from 'node:os';
import {
  type AgentInfo,
  type Clock,
  emptyNodeCounts,
  type GraphSpec,
  type IdSource,
  type NodeStatus,
  type Run,
  rfc3339,
  runConclusion,
  runStatus,
  type Stats,
  systemClock,
  ulidSource,
  validateGraph,
} from '../../model/index.js';
import {
  type AgentRegistration,
  ClaimConflictError,
  type ClaimedNode,
  type ClaimRef,
  type ClaimRequest,
  checkAgentRegistration,
  checkConclusion,
  checkId,
  checkLeaseTtl,
  checkMetadata,
  checkNodeName,
  checkRunId,
  DEFAULT_LEASE_TTL_MS,
  DEFAULT_LIST_LIMIT,
  decodeCursor,
  EventQueue,
  encodeCursor,
  type FinishRequest,
  InvalidArgumentError,
  InvalidGraphError,
  type Lease,
  LeaseExpiredError,
  type ListRunsQuery,
  MAX_LIST_LIMIT,
  type NodeEvent,
  NotFoundError,
  type Repository,
  type RunPage,
  type SubscribeOptions,
  UnavailableError,
  type WatchEvent,
} from '../../protocol/index.js';
import {
  type ClaimRecord,
  cancelRun,
  claimNode,
  createRun,
  finishNode,
  type Hooks,
  type NodeRecord,
  nodeSnapshot,
  orphanNode,
  type RunRecord,
  runSnapshot,
} from './state.js';

export interface MemoryRepositoryOptions {
  clock?: Clock;
  ids?: IdSource;
  /** How often lapsed leases are looked for; 0 disables the timer (tests then call expireLapsedLeases). */
  leaseCheckIntervalMs?: number;
}

interface LeaseRecord {
  id: string;
  ttlMs: number;
  expiresAt: number;
  claims: Set<NodeRecord>;
  agents: Set<string>;
}

/**
 * The embedded backend: all state in this process, transitions in state.ts.
 * Indexes (READY/orphaned nodes per runtime, claims per lease, runs in id
 * order) keep every operation proportional to what it touches.
 */
export class MemoryRepository implements Repository {
  private readonly clock: Clock;
  private readonly ids: IdSource;
  private readonly runs = new Map<string, RunRecord>();
  /** Runs in creation (= id) order. */
  private runList: RunRecord[] = [];
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly agents = new Map<string, { info: AgentInfo; leaseId: string }>();
  private readonly ready = new Map<string, Set<NodeRecord>>();
  private readonly orphaned = new Map<string, Set<NodeRecord>>();
  private readonly subscribers = new Map<string, Set<EventQueue<NodeEvent>>>();
  private readonly watchers = new Map<string, Set<EventQueue<WatchEvent>>>();
  private readonly nodeCounts = emptyNodeCounts();
  private readonly timer?: NodeJS.Timeout;
  private closed = false;
  private readonly hooks: Hooks;

  constructor(options: MemoryRepositoryOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.ids = options.ids ?? ulidSource();
    const interval = options.leaseCheckIntervalMs ?? 100;
    if (interval > 0) {
      this.timer = setInterval(() => this.expireLapsedLeases(), interval);
      this.timer.unref();
    }
    this.hooks = {
      statusChanged: (node, from) => this.onStatusChanged(node, from),
      nodeChanged: (node) => this.onNodeChanged(node),
      claimReleased: (node, claim) => {
        this.leases.get(claim.leaseId)?.claims.delete(node);
        if (claim.orphaned) this.orphaned.get(node.spec.runtime)?.delete(node);
      },
      runCompleted: () => {},
    };
  }

  // ---- runs

  async start(spec: GraphSpec): Promise<Run> {
    this.assertOpen();
    const problems = validateGraph(spec);
    if (problems.length > 0) throw new InvalidGraphError(problems);
    const now = this.clock.now();
    const run = createRun(this.ids.next(now), now, spec, this.hooks);
    this.runs.set(run.id, run);
    this.runList.push(run);
    return runSnapshot(run);
  }

  async inspect(runId: string): Promise<Run> {
    this.assertOpen();
    checkRunId(runId);
    return runSnapshot(this.getRun(runId));
  }

  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    this.assertOpen();
    const limit = query.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT)
      throw new InvalidArgumentError(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
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
    for (; i >= 0 && runs.length < limit; i--) {
      const r = list[i]!;
      if (query.since !== undefined && r.createdAt < query.since) break;
      runs.push({
        id: r.id,
        createdAt: rfc3339(r.createdAt),
        status: runStatus(r.counts),
        conclusion: r.conclusion,
        nodeCounts: { ...r.counts },
      });
    }
    const more = i >= 0 && (query.since === undefined || list[i]!.createdAt >= query.since);
    const last = list[i + 1];
    return {
      runs,
      nextCursor: more && runs.length > 0 && last ? encodeCursor(last.createdAt, last.id) : undefined,
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

  async deleteCompletedRunsBefore(ms: number): Promise<number> {
    this.assertOpen();
    const keep: RunRecord[] = [];
    let deleted = 0;
    for (const run of this.runList) {
      if (run.conclusion && run.createdAt < ms) {
        this.runs.delete(run.id);
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
    checkLeaseTtl(ttlMs);
    const id = this.ids.next(this.clock.now());
    this.leases.set(id, {
      id,
      ttlMs,
      expiresAt: this.clock.now() + ttlMs,
      claims: new Set(),
      agents: new Set(),
    });
    return { id, ttlMs };
  }

  async keepAlive(leaseId: string): Promise<void> {
    this.assertOpen();
    checkId('lease id', leaseId);
    const lease = this.liveLease(leaseId);
    lease.expiresAt = this.clock.now() + lease.ttlMs;
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.assertOpen();
    const lease = this.leases.get(leaseId);
    if (lease) this.endLease(lease);
  }

  async registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    this.assertOpen();
    checkId('lease id', leaseId);
    checkAgentRegistration(agent);
    const lease = this.liveLease(leaseId);
    const info: AgentInfo = {
      id: agent.id,
      runtimes: agent.runtimes.map((r) => ({ name: r.name })),
      startedAt: rfc3339(this.clock.now()),
      hostname: agent.hostname ?? osHostname(),
    };
    const previous = this.agents.get(agent.id);
    if (previous) this.leases.get(previous.leaseId)?.agents.delete(agent.id);
    this.agents.set(agent.id, { info, leaseId });
    lease.agents.add(agent.id);
    return info;
  }

  async deregisterAgent(agentId: string): Promise<void> {
    this.assertOpen();
    const a = this.agents.get(agentId);
    if (!a) return;
    this.agents.delete(agentId);
    this.leases.get(a.leaseId)?.agents.delete(agentId);
  }

  async listAgents(): Promise<AgentInfo[]> {
    this.assertOpen();
    this.expireLapsedLeases();
    return [...this.agents.values()].map((a) => a.info).sort((x, y) => x.id.localeCompare(y.id));
  }

  /** Orphans the claims of every lease past its expiry. Runs on a timer; public so tests with a manual clock can drive it. */
  expireLapsedLeases(): void {
    const now = this.clock.now();
    for (const lease of this.leases.values()) if (lease.expiresAt <= now) this.endLease(lease);
  }

  private endLease(lease: LeaseRecord): void {
    this.leases.delete(lease.id);
    for (const agentId of lease.agents) this.agents.delete(agentId);
    for (const node of lease.claims) orphanNode(node, this.hooks);
  }

  private liveLease(leaseId: string): LeaseRecord {
    const lease = this.leases.get(leaseId);
    if (lease && lease.expiresAt <= this.clock.now()) this.endLease(lease);
    if (!lease || !this.leases.has(leaseId)) throw new LeaseExpiredError(leaseId);
    return lease;
  }

  // ---- claims

  async claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    this.assertOpen();
    checkRunId(request.runId);
    checkNodeName(request.node);
    checkMetadata(request.metadata);
    const lease = this.liveLease(request.leaseId);
    const node = this.getNode(request.runId, request.node);
    const claim: ClaimRecord = {
      id: this.ids.next(this.clock.now()),
      agentId: request.agentId,
      metadata: request.metadata ?? {},
      orphaned: false,
      leaseId: lease.id,
    };
    const won = claimNode(node, claim, this.clock.now(), this.hooks);
    if (!won) return undefined;
    lease.claims.add(node);
    return {
      runId: request.runId,
      claimId: claim.id,
      attempt: node.attempts.length + 1,
      orphan: won.orphan,
      previousClaimId: won.previousClaimId,
      previousAgentId: won.previousAgentId,
      node: nodeSnapshot(node),
    };
  }

  async finish(request: FinishRequest): Promise<void> {
    this.assertOpen();
    checkRunId(request.runId);
    checkNodeName(request.node);
    checkConclusion(request.conclusion);
    checkMetadata(request.metadata);
    const node = this.getNode(request.runId, request.node);
    const ok = finishNode(
      node,
      request.claimId,
      request.conclusion,
      request.output ?? new Uint8Array(),
      request.metadata ?? {},
      this.clock.now(),
      this.hooks,
    );
    if (!ok)
      throw new ClaimConflictError(
        `claim ${request.claimId} on ${request.runId}/${request.node} is not the node's live claim (node ${node.status}${node.run.cancelled ? ', run cancelled' : ''})`,
        request.runId,
        request.node,
      );
  }

  async claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    this.assertOpen();
    return claims.map((c) => {
      const node = this.runs.get(c.runId)?.nodes.get(c.node);
      return node?.status === 'RUNNING' && node.claim?.id === c.claimId && !node.claim.orphaned;
    });
  }

  // ---- streams

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    this.assertOpen();
    const queue = new EventQueue<NodeEvent>(options.signal);
    const runtimes = [...new Set(options.runtimes)];
    // Register first and list in the same tick: nothing can become READY in between.
    for (const rt of runtimes) setOf(this.subscribers, rt).add(queue);
    queue.onClose = () => {
      for (const rt of runtimes) this.subscribers.get(rt)?.delete(queue);
    };
    for (const rt of runtimes) {
      for (const n of this.ready.get(rt) ?? []) queue.push(event('NODE_READY', n));
      for (const n of this.orphaned.get(rt) ?? []) queue.push(event('NODE_ORPHANED', n));
    }
    return queue;
  }

  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    this.assertOpen();
    checkRunId(runId);
    const run = this.getRun(runId);
    const queue = new EventQueue<WatchEvent>(options.signal);
    queue.push({ type: 'snapshot', run: runSnapshot(run) });
    if (run.conclusion) queue.close();
    else {
      setOf(this.watchers, runId).add(queue);
      queue.onClose = () => this.watchers.get(runId)?.delete(queue);
    }
    return queue;
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const set of this.subscribers.values()) for (const q of set) q.close();
    for (const set of this.watchers.values()) for (const q of set) q.close();
  }

  // ---- hooks: indexes, counters and streams follow the transitions

  private onStatusChanged(node: NodeRecord, from: NodeStatus | undefined): void {
    if (from) this.nodeCounts[from]--;
    this.nodeCounts[node.status]++;
    const rt = node.spec.runtime;
    if (from === 'READY') this.ready.get(rt)?.delete(node);
    if (node.status === 'READY') {
      setOf(this.ready, rt).add(node);
      const ev = event('NODE_READY', node);
      for (const q of this.subscribers.get(rt) ?? []) q.push(ev);
    }
  }

  private onNodeChanged(node: NodeRecord): void {
    if (node.claim?.orphaned && !this.orphaned.get(node.spec.runtime)?.has(node)) {
      setOf(this.orphaned, node.spec.runtime).add(node);
      const ev = event('NODE_ORPHANED', node);
      for (const q of this.subscribers.get(node.spec.runtime) ?? []) q.push(ev);
    }
    const watchers = this.watchers.get(node.run.id);
    if (!watchers || watchers.size === 0) return;
    const run = node.run;
    const done = run.counts.COMPLETED === run.order.length;
    const ev: WatchEvent = {
      type: 'node',
      runId: run.id,
      node: nodeSnapshot(node),
      runStatus: runStatus(run.counts),
      // The conclusion is set right after the last node completes; derive it here so the final event carries it.
      runConclusion: done ? (run.conclusion ?? runConclusion(run.order, run.cancelled)) : undefined,
    };
    for (const q of watchers) {
      q.push(ev);
      if (done) q.close();
    }
    if (done) this.watchers.delete(run.id);
  }

  private getRun(runId: string): RunRecord {
    const run = this.runs.get(runId);
    if (!run) throw new NotFoundError('run', runId);
    return run;
  }

  private getNode(runId: string, name: string): NodeRecord {
    const node = this.getRun(runId).nodes.get(name);
    if (!node) throw new NotFoundError('node', `${runId}/${name}`);
    return node;
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('memory repository is closed');
  }
}

function event(type: NodeEvent['type'], node: NodeRecord): NodeEvent {
  return { type, runId: node.run.id, node: node.spec.name, runtime: node.spec.runtime };
}

function setOf<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let s = map.get(key);
  if (!s) {
    s = new Set();
    map.set(key, s);
  }
  return s;
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
