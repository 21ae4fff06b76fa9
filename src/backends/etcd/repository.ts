import { type Logger, silentLogger } from '../../log.js';
import {
  type AgentInfo,
  type Clock,
  type GraphSpec,
  type IdSource,
  type Run,
  type Stats,
  systemClock,
  ulidFloor,
  ulidSource,
} from '../../model/index.js';
import * as checks from '../../model/requests.js';
import type { Schedule, ScheduleInput, ScheduleStep } from '../../model/schedules.js';
import type { WorkflowDefinition, WorkflowInput, WorkflowSummary } from '../../model/workflows.js';
import {
  type AgentRegistration,
  type AppendOutputRequest,
  type ClaimedNode,
  type ClaimRef,
  type ClaimRequest,
  DEFAULT_LEASE_TTL_MS,
  type FinishRequest,
  type FinishResult,
  finishedAlone,
  InvalidArgumentError,
  type Lease,
  type ListRunsQuery,
  type NodeEvent,
  type Repository,
  type RunPage,
  type SubscribeOptions,
  UnavailableError,
  type WatchEvent,
} from '../../protocol/index.js';
import type { StartOptions } from '../../protocol/repository.js';
import { Schedules } from '../schedules.js';
import { cancelRun } from './cancel.js';
import { ClaimBatcher } from './claim-batch.js';
import { type EtcdContext, SeenState, TopologyCache } from './context.js';
import { FinishBatcher } from './finish-batch.js';
import { Keys } from './keys.js';
import { Leases } from './leases.js';
import { appendOutput } from './output.js';
import * as reads from './reads.js';
import { releaseClaim } from './release.js';
import { retryRun } from './resume.js';
import { deleteCompletedRunsBefore } from './retention.js';
import { EtcdScheduleStore } from './schedules.js';
import { startRun } from './start.js';
import { type EtcdConnectionOptions, getPrefix, Store } from './store.js';
import { Streams } from './streams.js';
import { settleRunWork, sweep } from './sweep.js';
import * as timing from './timing.js';
import * as workflows from './workflows.js';

export const DEFAULT_ETCD_NAMESPACE = 'adagio/v1/';

export interface EtcdRepositoryOptions extends EtcdConnectionOptions {
  /** Key prefix for everything this repository stores; default `adagio/v1/`. */
  namespace?: string;
  /** TTL of leases granted without an explicit one; default 10 s. */
  leaseTtlMs?: number;
  clock?: Clock;
  ids?: IdSource;
  /** How often unfinished work left by dead processes is looked for; 0 disables the timer. Default 5 s. */
  sweepIntervalMs?: number;
  /** How often due retries are looked for (time rules, timing.ts); 0 disables the timer (tests call sweepTimers). */
  timersIntervalMs?: number;
  logger?: Logger;
}

/**
 * The Repository protocol on etcd v3 (docs/design.md §3). Keyspace in keys.ts,
 * transaction budgets in limits.ts, one file per transition: start.ts,
 * claim.ts (batched by claim-batch.ts), finish.ts (finish-batch.ts),
 * cascade.ts, fanout.ts, cancel.ts, seal.ts, retention.ts; unfinished work
 * items resumed by sweep.ts; reads in reads.ts, subscribe and watch in
 * streams.ts, leases and agents in leases.ts, live output in output.ts.
 */
export class EtcdRepository implements Repository {
  /** Rule 21: the offer is checked; dependents stay READY for any claimer. */
  readonly handsOff: boolean = false;

  private readonly store: Store;
  private readonly ctx: EtcdContext;
  private readonly schedules: Schedules;
  private readonly leases: Leases;
  private readonly streams: Streams;
  private readonly claims: ClaimBatcher;
  private readonly finishes: FinishBatcher;
  private readonly timer?: NodeJS.Timeout;
  private sweeping = false;
  private sweepingTimers = false;
  private readonly timersTimer?: NodeJS.Timeout;
  private closed = false;
  readonly namespace: string;

  /** Creates the repository and checks etcd answers (UnavailableError otherwise). */
  static async connect(options: EtcdRepositoryOptions): Promise<EtcdRepository> {
    const repo = new EtcdRepository(options);
    try {
      await repo.ping();
    } catch (e) {
      await repo.close();
      throw e;
    }
    return repo;
  }

  constructor(options: EtcdRepositoryOptions) {
    if (!options.hosts || options.hosts.length === 0)
      throw new InvalidArgumentError('etcd needs at least one address');
    this.namespace = options.namespace ?? DEFAULT_ETCD_NAMESPACE;
    if (!this.namespace.endsWith('/')) this.namespace += '/';
    const logger = options.logger ?? silentLogger;
    this.store = new Store(options, logger);
    this.ctx = {
      store: this.store,
      keys: new Keys(this.namespace),
      clock: options.clock ?? systemClock,
      ids: options.ids ?? ulidSource(),
      logger,
      topology: new TopologyCache(),
      seen: new SeenState(),
    };
    this.leases = new Leases(
      this.store,
      this.ctx.keys,
      this.ctx.clock,
      options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    );
    this.streams = new Streams(this.ctx);
    this.schedules = new Schedules(new EtcdScheduleStore(this.ctx), this.ctx.clock);
    this.claims = new ClaimBatcher(this.ctx);
    this.finishes = new FinishBatcher(this.ctx);
    const interval = options.sweepIntervalMs ?? 5_000;
    if (interval > 0) {
      this.timer = setInterval(() => void this.sweepQuietly(), interval);
      this.timer.unref();
    }
    const timersInterval = options.timersIntervalMs ?? 1_000;
    if (timersInterval > 0) {
      this.timersTimer = setInterval(() => void this.sweepTimersQuietly(), timersInterval);
      this.timersTimer.unref();
    }
  }

  // ---- workflows (rule 16)

  putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    this.assertOpen();
    return workflows.putWorkflow(this.ctx, name, input);
  }

  getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    this.assertOpen();
    return workflows.getWorkflow(this.ctx, name, version);
  }

  listWorkflows(): Promise<WorkflowSummary[]> {
    this.assertOpen();
    return workflows.listWorkflows(this.ctx);
  }

  listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    this.assertOpen();
    return workflows.listWorkflowVersions(this.ctx, name);
  }

  deleteWorkflow(name: string): Promise<void> {
    this.assertOpen();
    return workflows.deleteWorkflow(this.ctx, name, (n) => this.workflowInUse(n));
  }

  /**
   * What still uses the workflow, named for the refusal (e.g. `schedule
   * "nightly"`), or undefined: delete is refused while it answers.
   */
  protected workflowInUse(name: string): Promise<string | undefined> {
    return this.schedules.usedBy(name);
  }

  // ---- schedules (rule 18)

  private opened<T>(f: () => Promise<T>): Promise<T> {
    this.assertOpen();
    return f();
  }

  putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    return this.opened(() => this.schedules.put(name, input));
  }

  getSchedule(name: string): Promise<Schedule> {
    return this.opened(() => this.schedules.get(name));
  }

  listSchedules(): Promise<Schedule[]> {
    return this.opened(() => this.schedules.list());
  }

  deleteSchedule(name: string): Promise<void> {
    return this.opened(() => this.schedules.delete(name));
  }

  pauseSchedule(name: string, paused: boolean): Promise<Schedule> {
    return this.opened(() => this.schedules.pause(name, paused));
  }

  advanceSchedule(name: string, step: ScheduleStep): Promise<boolean> {
    return this.opened(() => this.schedules.advance(name, step));
  }

  // ---- runs

  start(spec: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    this.assertOpen();
    return startRun(this.ctx, spec, options);
  }

  async inspect(runId: string): Promise<Run> {
    this.assertOpen();
    checks.checkRunId(runId);
    return (await this.store.retrying('inspect', () => reads.loadRun(this.ctx, runId))).run;
  }

  listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    this.assertOpen();
    return reads.listRuns(this.ctx, query);
  }

  queuedNodes(): Promise<number> {
    this.assertOpen();
    return reads.queuedNodes(this.ctx);
  }

  stats(): Promise<Stats> {
    this.assertOpen();
    return reads.stats(this.ctx);
  }

  async cancel(runId: string): Promise<Run> {
    this.assertOpen();
    checks.checkRunId(runId);
    await cancelRun(this.ctx, runId);
    return this.inspect(runId);
  }

  async retry(runId: string, nodes?: string[]): Promise<Run> {
    this.assertOpen();
    checks.checkRunId(runId);
    checks.checkRetryNodes(nodes);
    // Work the run's earlier transitions left recorded goes first: replayed after the plan, it would undo it.
    await settleRunWork(this.ctx, runId);
    await retryRun(this.ctx, runId, nodes);
    return this.inspect(runId);
  }

  deleteCompletedRunsBefore(ms: number): Promise<number> {
    this.assertOpen();
    return deleteCompletedRunsBefore(this.ctx, ulidFloor(ms), ms);
  }

  // ---- leases and agents

  async grantLease(ttlMs?: number): Promise<Lease> {
    this.assertOpen();
    if (ttlMs !== undefined) checks.checkLeaseTtl(ttlMs);
    return this.leases.grant(ttlMs);
  }

  async keepAlive(leaseId: string): Promise<void> {
    this.assertOpen();
    checks.checkId('lease id', leaseId);
    return this.leases.keepAlive(leaseId);
  }

  async revokeLease(leaseId: string): Promise<void> {
    this.assertOpen();
    return this.leases.revoke(leaseId);
  }

  async registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    this.assertOpen();
    checks.checkId('lease id', leaseId);
    checks.checkAgentRegistration(agent);
    return this.leases.register(leaseId, agent);
  }

  async deregisterAgent(agentId: string): Promise<void> {
    this.assertOpen();
    return this.leases.deregister(agentId);
  }

  listAgents(): Promise<AgentInfo[]> {
    this.assertOpen();
    return this.leases.list();
  }

  // ---- claims

  async claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    this.assertOpen();
    checks.checkRunId(request.runId);
    checks.checkNodeName(request.node);
    return this.claims.claim(request);
  }

  /** Rule 21's hand-off is not taken here: etcd claims every node in its own claim transaction. */
  async finish(request: FinishRequest): Promise<FinishResult> {
    this.assertOpen();
    checks.checkRunId(request.runId);
    checks.checkNodeName(request.node);
    if (request.handOff) checks.checkHandOff(request.handOff);
    await this.finishes.finish(request);
    return finishedAlone();
  }

  claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    this.assertOpen();
    return reads.claimsHeld(this.ctx, claims);
  }

  /** Rare (an agent's shutdown), so one transaction per claim. */
  async release(claims: ClaimRef[]): Promise<boolean[]> {
    this.assertOpen();
    checks.checkClaimRefs(claims);
    return Promise.all(claims.map((c) => releaseClaim(this.ctx, c)));
  }

  appendOutput(request: AppendOutputRequest): Promise<void> {
    this.assertOpen();
    return appendOutput(this.ctx, request);
  }

  // ---- streams

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    this.assertOpen();
    return this.streams.subscribe(options);
  }

  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    this.assertOpen();
    checks.checkRunId(runId);
    return this.streams.watch(runId, options);
  }

  /**
   * One pass of the sweeper (work left by dead processes); the timer calls
   * it, tests may too. Timed items an older store kept among that work are
   * done here once due (timing.ts).
   */
  async sweep(): Promise<void> {
    const legacy = await sweep(this.ctx);
    const swept = { released: 0, timedOut: 0, runsTimedOut: 0 };
    for (const t of legacy) await timing.fireTimed(this.ctx, t.runId, t.item, t.kv, swept);
  }

  /**
   * One pass of the time rules (retries whose delay is over, attempts past
   * their node's timeout, runs past their deadline, by ctx.clock);
   * a timer calls it, tests with an injectable clock too.
   */
  sweepTimers(): Promise<{ released: number; timedOut: number; runsTimedOut: number }> {
    return timing.sweepTimers(this.ctx);
  }

  private async sweepTimersQuietly(): Promise<void> {
    if (this.sweepingTimers || this.closed) return;
    this.sweepingTimers = true;
    try {
      await this.sweepTimers();
    } catch (e) {
      this.ctx.logger.debug('time sweep failed', { error: (e as Error).message });
    } finally {
      this.sweepingTimers = false;
    }
  }

  private async sweepQuietly(): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      await this.sweep();
    } catch (e) {
      this.ctx.logger.debug('sweep failed', { error: (e as Error).message });
    } finally {
      this.sweeping = false;
    }
  }

  async ping(): Promise<void> {
    this.assertOpen();
    await this.store.retrying('ping', () =>
      this.store.range({ key: this.ctx.keys.run('ping'), count_only: true }),
    );
  }

  /** Deletes every key under the namespace (tests, and operators retiring a namespace). */
  async deleteNamespace(): Promise<void> {
    await this.store.txn({
      success: [{ request_delete_range: getPrefix(this.ctx.keys.all()).request_range }],
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.timersTimer) clearInterval(this.timersTimer);
    await this.streams.closeAll();
    this.leases.close();
    this.store.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('etcd repository is closed');
  }
}
