import type { DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { type Logger, silentLogger } from '../../log.js';
import {
  type AgentInfo,
  type Clock,
  type GraphSpec,
  type IdSource,
  type Run,
  type Stats,
  systemClock,
  ulidSource,
  type WorkflowDefinition,
  type WorkflowInput,
  type WorkflowSummary,
} from '../../model/index.js';
import type { Schedule, ScheduleInput, ScheduleStep } from '../../model/schedules.js';
import {
  type AgentRegistration,
  type AppendOutputRequest,
  type ClaimedNode,
  type ClaimRef,
  type ClaimRequest,
  DEFAULT_LEASE_TTL_MS,
  type FinishRequest,
  type FinishResult,
  type Lease,
  type ListRunsQuery,
  type NodeEvent,
  type Repository,
  type RunPage,
  type StartOptions,
  type SubscribeOptions,
  UnavailableError,
  type WatchEvent,
} from '../../protocol/index.js';
import { Schedules } from '../schedules.js';
import { cancelRun } from './cancel.js';
import { ClaimBatcher } from './claim.js';
import { ClaimRecords } from './claim-records.js';
import { DownstreamCache, type DynamoContext, newBus } from './context.js';
import { Db, type DbCounters } from './db.js';
import { FinishBatcher } from './finish.js';
import { Leases } from './leases.js';
import { appendOutput } from './output.js';
import * as reads from './reads.js';
import { releaseClaims } from './release.js';
import { retryRun } from './resume.js';
import { deleteCompletedRunsBefore } from './retention.js';
import { settleRunWork } from './run-work.js';
import { DynamoScheduleStore } from './schedules.js';
import { StartBatcher } from './start.js';
import { Streams } from './streams.js';
import { sweep } from './sweep.js';
import { deleteTable, ensureTable } from './table.js';
import { sweepTimers } from './timing.js';
import { WaitingNodes } from './waiting.js';
import * as workflows from './workflows.js';
import { WrittenNodes } from './written-nodes.js';

export const DEFAULT_DYNAMODB_TABLE = 'adagio';

export interface DynamoDbRepositoryOptions {
  /** Table name; default `adagio`. Created with its indexes when missing. */
  table?: string;
  /** AWS region; default from the SDK's chain (AWS_REGION...). */
  region?: string;
  /** Endpoint URL: DynamoDB Local, or a VPC endpoint. Default: the region's. */
  endpoint?: string;
  /** Credentials; default the SDK's chain (env, profile, instance role). */
  credentials?: DynamoDBClientConfig['credentials'];
  /** TTL of leases granted without an explicit one; default 10 s. */
  leaseTtlMs?: number;
  /** How often subscribers and watchers of other processes' changes poll; default 250 ms. */
  pollIntervalMs?: number;
  /** How often leases are observed and unfinished work resumed; 0 disables the timer. Default 250 ms. */
  sweepIntervalMs?: number;
  clock?: Clock;
  ids?: IdSource;
  logger?: Logger;
}

/**
 * The Repository protocol on DynamoDB (docs/design.md §3, docs/dynamodb.md).
 * Items and keys in items.ts, budgets in limits.ts, table and indexes in
 * table.ts; one file per transition: start.ts, claim.ts, finish.ts,
 * settle.ts (cascade and fan-out), cancel.ts, resume.ts, output.ts,
 * retention.ts; leases.ts (the lock client's record-version leases),
 * streams.ts (subscribe, watch), reads.ts, sweep.ts.
 */
export class DynamoDbRepository implements Repository {
  /** Rule 21: the dependent's judged write carries the claim (hand-off.ts). */
  readonly handsOff: boolean = true;

  private readonly db: Db;
  private readonly ctx: DynamoContext;
  private readonly leases: Leases;
  private readonly streams: Streams;
  private readonly schedules: Schedules;
  private readonly claims: ClaimBatcher;
  private readonly finishes: FinishBatcher;
  private readonly starts: StartBatcher;
  private readonly sweepSeen = new Map<string, number>();
  private sweeping = false;
  private closed = false;

  /** Creates the table when missing, checks its schema version, and starts the sweeper. */
  static async connect(options: DynamoDbRepositoryOptions = {}): Promise<DynamoDbRepository> {
    const repo = new DynamoDbRepository(options);
    try {
      await ensureTable(repo.db);
    } catch (e) {
      await repo.close();
      throw e;
    }
    repo.startTimer(options.sweepIntervalMs ?? 250);
    return repo;
  }

  private constructor(options: DynamoDbRepositoryOptions) {
    this.db = new Db(options.table ?? DEFAULT_DYNAMODB_TABLE, {
      region: options.region ?? process.env.AWS_REGION ?? 'us-east-1',
      endpoint: options.endpoint,
      credentials: options.credentials,
    });
    const clock = options.clock ?? systemClock;
    this.ctx = {
      db: this.db,
      clock,
      ids: options.ids ?? ulidSource(),
      logger: options.logger ?? silentLogger,
      bus: newBus(),
      downstream: new DownstreamCache(),
      claimRecords: new ClaimRecords(this.db, clock),
      nodes: new WrittenNodes(),
      waiting: new WaitingNodes(),
    };
    this.claims = new ClaimBatcher(this.ctx);
    this.finishes = new FinishBatcher(this.ctx);
    this.starts = new StartBatcher(this.ctx);
    this.leases = new Leases(this.ctx, options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS);
    this.streams = new Streams(this.ctx, options.pollIntervalMs ?? 250);
    this.schedules = new Schedules(new DynamoScheduleStore(this.ctx), this.ctx.clock);
  }

  private interval?: NodeJS.Timeout;

  private startTimer(ms: number): void {
    if (ms <= 0) return;
    // Work items younger than 5 s belong to a live process most likely: the sweeper leaves them be.
    this.interval = setInterval(() => void this.sweepQuietly(Math.max(ms * 4, 5_000)), ms);
    this.interval.unref();
  }

  private async sweepQuietly(graceMs: number): Promise<void> {
    if (this.sweeping || this.closed) return;
    this.sweeping = true;
    try {
      await sweep(this.ctx, this.leases, this.sweepSeen, graceMs);
    } catch (e) {
      if (!this.closed) this.ctx.logger.debug('dynamodb sweep failed', { error: (e as Error).message });
    } finally {
      this.sweeping = false;
    }
  }

  get table(): string {
    return this.db.table;
  }

  /** Requests this process made and the capacity DynamoDB says they consumed (benchmarks). */
  get counters(): DbCounters {
    return this.db.counters;
  }

  start(spec: GraphSpec | undefined, options?: StartOptions): Promise<Run> {
    return this.open(() => this.starts.start(spec, options));
  }
  putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    return this.open(() => workflows.putWorkflow(this.ctx, name, input));
  }
  getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    return this.open(() => workflows.getWorkflow(this.ctx, name, version));
  }
  listWorkflows(): Promise<WorkflowSummary[]> {
    return this.open(() => workflows.listWorkflows(this.ctx));
  }
  listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    return this.open(() => workflows.listWorkflowVersions(this.ctx, name));
  }
  deleteWorkflow(name: string): Promise<void> {
    return this.open(() => workflows.deleteWorkflow(this.ctx, name, (n) => this.workflowInUse(n)));
  }
  /** What still uses a workflow (a schedule, say), or undefined: delete is refused while it answers. */
  protected workflowInUse(name: string): Promise<string | undefined> {
    return this.schedules.usedBy(name);
  }

  // ---- schedules (rule 18)

  putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    return this.open(() => this.schedules.put(name, input));
  }
  getSchedule(name: string): Promise<Schedule> {
    return this.open(() => this.schedules.get(name));
  }
  listSchedules(): Promise<Schedule[]> {
    return this.open(() => this.schedules.list());
  }
  deleteSchedule(name: string): Promise<void> {
    return this.open(() => this.schedules.delete(name));
  }
  pauseSchedule(name: string, paused: boolean): Promise<Schedule> {
    return this.open(() => this.schedules.pause(name, paused));
  }
  advanceSchedule(name: string, step: ScheduleStep): Promise<boolean> {
    return this.open(() => this.schedules.advance(name, step));
  }
  inspect(runId: string): Promise<Run> {
    return this.open(() => reads.inspectRun(this.ctx, runId));
  }
  listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    return this.open(() => reads.listRuns(this.ctx, query));
  }
  stats(): Promise<Stats> {
    return this.open(() => reads.stats(this.ctx));
  }
  cancel(runId: string): Promise<Run> {
    return this.open(() => cancelRun(this.ctx, runId, (id) => reads.inspectRun(this.ctx, id)));
  }
  retry(runId: string, nodes?: string[]): Promise<Run> {
    return this.open(async () => {
      // Work the run's earlier transitions left recorded goes first: replayed after the plan, it would undo it.
      await settleRunWork(this.ctx, runId);
      return retryRun(this.ctx, runId, nodes, (id) => reads.inspectRun(this.ctx, id));
    });
  }
  grantLease(ttlMs?: number): Promise<Lease> {
    return this.open(() => this.leases.grant(ttlMs));
  }
  keepAlive(leaseId: string): Promise<void> {
    return this.open(() => this.leases.keepAlive(leaseId));
  }
  revokeLease(leaseId: string): Promise<void> {
    return this.open(() => this.leases.revoke(leaseId));
  }
  registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    return this.open(() => this.leases.register(leaseId, agent));
  }
  deregisterAgent(agentId: string): Promise<void> {
    return this.open(() => this.leases.deregister(agentId));
  }
  listAgents(): Promise<AgentInfo[]> {
    return this.open(() => this.leases.list());
  }
  claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    return this.open(() => this.claims.claim(request));
  }
  finish(request: FinishRequest): Promise<FinishResult> {
    return this.open(() => this.finishes.finish(request));
  }
  claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    return this.open(() => reads.claimsHeld(this.ctx, claims));
  }
  release(claims: ClaimRef[]): Promise<boolean[]> {
    return this.open(() => releaseClaims(this.ctx, claims));
  }
  appendOutput(request: AppendOutputRequest): Promise<void> {
    return this.open(() => appendOutput(this.ctx, request));
  }
  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    this.assertOpen();
    return this.streams.subscribe(options);
  }
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    this.assertOpen();
    return this.streams.watch(runId, options);
  }
  deleteCompletedRunsBefore(ms: number): Promise<number> {
    return this.open(() => deleteCompletedRunsBefore(this.ctx, ms));
  }
  ping(): Promise<void> {
    return this.open(async () => {
      await this.db.get({ pk: 'schema', sk: '#' });
    });
  }

  /** A retry whose process dies after `parts` parts of its plan (tests: the sweeper must finish it). */
  retryStoppingAfter(runId: string, parts: number): Promise<Run> {
    return this.open(() =>
      retryRun(this.ctx, runId, undefined, (id) => reads.inspectRun(this.ctx, id), parts),
    );
  }

  /** Runs the time rules due by the clock now (retry delays, node timeouts, run deadlines); for tests and tools. */
  sweepTimers(): Promise<number> {
    return this.open(() => sweepTimers(this.ctx));
  }

  /** Observes leases and resumes unfinished work now (the timer's job); for tests and tools. */
  sweepNow(): Promise<void> {
    return this.open(() => sweep(this.ctx, this.leases, this.sweepSeen, 0));
  }

  /** Deletes the table (tests). */
  deleteTable(): Promise<void> {
    return deleteTable(this.db);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.interval) clearInterval(this.interval);
    // Best effort: a record left behind is pruned by any process, or goes with its lease.
    await this.ctx.claimRecords.flush().catch(() => undefined);
    this.ctx.bus.emit('close');
    this.ctx.bus.removeAllListeners();
    this.db.close();
  }

  private async open<T>(fn: () => Promise<T>): Promise<T> {
    this.assertOpen();
    return fn();
  }

  private assertOpen(): void {
    if (this.closed) throw new UnavailableError('dynamodb repository is closed');
  }
}
