import { randomBytes } from 'node:crypto';
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
  type FinishRequest,
  type FinishResult,
  finishedAlone,
  InvalidArgumentError,
  isAdagioError,
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
import { ClaimBatcher } from './claims.js';
import { Db } from './db.js';
import { FinishBatcher } from './finishes.js';
import * as leases from './leases.js';
import { Listener } from './listener.js';
import { migrate } from './migrations.js';
import { Publisher } from './notices.js';
import { appendOutput } from './output.js';
import * as reads from './reads.js';
import { retryRun } from './resume.js';
import { PostgresScheduleStore } from './schedules.js';
import { DELETE_COMPLETED_RUNS, PING } from './sql.js';
import { StartBatcher } from './starts.js';
import { Streams } from './streams.js';
import * as timing from './timing.js';
import {
  cancelRun,
  claimNode,
  finishNode,
  releaseClaims,
  startRun,
  type TransitionContext,
} from './transitions.js';
import * as workflows from './workflows.js';

export interface PostgresRepositoryOptions {
  /**
   * libpq-style URL. TLS is set by its parameters, for pooled and LISTEN
   * connections alike: `sslmode=verify-full&sslrootcert=/path/ca.pem` (and
   * `sslcert`/`sslkey` for client certificates). Note that with this client
   * `sslmode=require` verifies the certificate too; `sslmode=no-verify`
   * encrypts without verifying. Tested in test/postgres/tls.test.ts.
   */
  connectionString: string;
  /** Schema holding Adagio's tables; created and migrated at start. */
  schema?: string;
  poolSize?: number;
  clock?: Clock;
  ids?: IdSource;
  /** How often this process looks for lapsed leases; 0 disables the timer (call reap()). */
  reaperIntervalMs?: number;
  /**
   * How often subscriptions re-query READY/orphaned nodes as a safety net for
   * a notice lost when a process died between commit and NOTIFY. Default
   * 10 s; 0 disables.
   */
  catchUpIntervalMs?: number;
  /** How many READY nodes (oldest first) that periodic re-query reads at most; default 1,000. */
  catchUpLimit?: number;
  /** NOTIFY channel; defaults to "adagio_<schema>" so schemas sharing a database stay apart. */
  notifyChannel?: string;
  /** How long an operation retries through connection failures before UnavailableError. */
  retryForMs?: number;
  logger?: Logger;
}

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const CHANNEL = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The Repository protocol on PostgreSQL (docs/design.md §3). Transitions live in
 * transitions.ts, leases in leases.ts, reads in reads.ts, streams in
 * streams.ts; this class wires them and runs the schema migration before the
 * first operation.
 */
export class PostgresRepository implements Repository {
  /** Rule 21: measured no faster than its batched asynchronous claims (docs/design.md). */
  readonly handsOff: boolean = false;

  private readonly db: Db;
  private readonly schedules: Schedules;
  private readonly ctx: TransitionContext;
  private readonly listener: Listener;
  private readonly streams: Streams;
  private readonly logger: Logger;
  private readonly timer?: NodeJS.Timeout;
  private ready?: Promise<void>;
  private reaping = false;
  private sweepingTimers = false;
  private closed = false;
  readonly schema: string;
  readonly channel: string;

  /** Connects and migrates; throws (UnavailableError when unreachable) instead of deferring to the first call. */
  static async connect(options: PostgresRepositoryOptions): Promise<PostgresRepository> {
    const repo = new PostgresRepository(options);
    try {
      await repo.ensureReady();
      await repo.listenNow();
    } catch (e) {
      await repo.close();
      throw e;
    }
    return repo;
  }

  /**
   * Starts LISTEN now and keeps it for the repository's life. A subscription
   * that had to open LISTEN itself would miss the notices of whatever happens
   * meanwhile; its catch-up query finds nodes still READY, not one already
   * claimed. With LISTEN on from connect(), a subscriber hears every notice
   * sent after subscribe() returns.
   */
  private listenNow(timeoutMs = 10_000): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, timeoutMs); // not fatal: subscriptions still catch up by query
      this.listener.add({
        onListening: () => {
          clearTimeout(timer);
          resolve();
        },
        onNotice: () => {},
      });
    });
  }

  constructor(options: PostgresRepositoryOptions) {
    if (!options.connectionString) throw new InvalidArgumentError('PostgreSQL connection string is empty');
    this.schema = options.schema ?? 'adagio';
    if (!IDENTIFIER.test(this.schema))
      throw new InvalidArgumentError(
        `PostgreSQL schema ${JSON.stringify(this.schema)} must be a lowercase identifier (letters, digits, _)`,
      );
    this.channel = options.notifyChannel ?? `adagio_${this.schema}`.slice(0, 63);
    if (!CHANNEL.test(this.channel))
      throw new InvalidArgumentError(`NOTIFY channel ${JSON.stringify(this.channel)} must be an identifier`);
    if (
      options.catchUpLimit !== undefined &&
      !(Number.isInteger(options.catchUpLimit) && options.catchUpLimit > 0)
    )
      throw new InvalidArgumentError(`catchUpLimit must be a whole number > 0, got ${options.catchUpLimit}`);
    this.logger = options.logger ?? silentLogger;
    this.db = new Db({
      connectionString: options.connectionString,
      schema: this.schema,
      poolSize: options.poolSize ?? 10,
      retryForMs: options.retryForMs ?? 15_000,
      logger: this.logger,
    });
    // Unique per repository, so two repositories in one process still hear each other through the server.
    const origin = randomBytes(6).toString('base64url');
    this.listener = new Listener(this.db, this.channel, this.logger, origin);
    const listener = this.listener;
    const publisher = new Publisher(this.db, this.channel, this.logger, origin, (n) =>
      listener.deliverLocal(n),
    );
    this.ctx = {
      db: this.db,
      channel: this.channel,
      publisher,
      finishes: new FinishBatcher(this.db, publisher),
      claims: new ClaimBatcher(this.db),
      starts: new StartBatcher(this.db),
      logger: this.logger,
      clock: options.clock ?? systemClock,
      ids: options.ids ?? ulidSource(),
    };
    this.schedules = new Schedules(new PostgresScheduleStore(this.db), this.ctx.clock);
    this.streams = new Streams(
      this.db,
      this.listener,
      this.logger,
      () => this.ensureReady(),
      options.catchUpIntervalMs,
      options.catchUpLimit,
    );
    const interval = options.reaperIntervalMs ?? 1_000;
    if (interval > 0) {
      this.timer = setInterval(() => {
        void this.reapQuietly();
        void this.sweepTimersQuietly();
      }, interval);
      this.timer.unref();
    }
  }

  /** Runs the migrations once; a failure is retried by the next call. */
  private ensureReady(): Promise<void> {
    if (this.closed) return Promise.reject(new UnavailableError('PostgreSQL repository is closed'));
    if (!this.ready) {
      this.ready = this.db
        .retrying('schema migration', async () => {
          const client = await this.db.pool.connect();
          try {
            await migrate(client, this.schema);
          } catch (e) {
            client.release(e as Error);
            throw e;
          }
          client.release();
        })
        .catch((e) => {
          this.ready = undefined;
          if (isAdagioError(e)) throw e;
          throw new UnavailableError(`PostgreSQL schema migration failed: ${(e as Error).message}`, {
            cause: e,
          });
        });
    }
    return this.ready;
  }

  private async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.ensureReady();
    return fn();
  }

  // ---- workflows (rule 16)

  putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    return this.run(() => workflows.putWorkflow(this.db, this.ctx.clock.now(), name, input));
  }

  getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    return this.run(() => workflows.getWorkflow(this.db, name, version));
  }

  listWorkflows(): Promise<WorkflowSummary[]> {
    return this.run(() => workflows.listWorkflows(this.db));
  }

  listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    return this.run(() => workflows.listWorkflowVersions(this.db, name));
  }

  deleteWorkflow(name: string): Promise<void> {
    return this.run(() => workflows.deleteWorkflow(this.db, name, (n) => this.workflowInUse(n)));
  }

  /**
   * What still uses the workflow, named for the refusal (e.g. `schedule
   * "nightly"`), or undefined: delete is refused while it answers.
   */
  protected workflowInUse(name: string): Promise<string | undefined> {
    return this.schedules.usedBy(name);
  }

  // ---- schedules (rule 18)

  putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    return this.run(() => this.schedules.put(name, input));
  }

  getSchedule(name: string): Promise<Schedule> {
    return this.run(() => this.schedules.get(name));
  }

  listSchedules(): Promise<Schedule[]> {
    return this.run(() => this.schedules.list());
  }

  deleteSchedule(name: string): Promise<void> {
    return this.run(() => this.schedules.delete(name));
  }

  pauseSchedule(name: string, paused: boolean): Promise<Schedule> {
    return this.run(() => this.schedules.pause(name, paused));
  }

  advanceSchedule(name: string, step: ScheduleStep): Promise<boolean> {
    return this.run(() => this.schedules.advance(name, step));
  }

  // ---- runs

  start(spec: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    return this.run(() => startRun(this.ctx, spec, options, (id) => reads.runByRequest(this.db, id)));
  }

  async inspect(runId: string): Promise<Run> {
    checks.checkRunId(runId);
    return this.run(() => this.db.retrying('inspect', () => reads.inspect(this.db, runId)));
  }

  listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    return this.run(() => this.db.retrying('list runs', () => reads.listRuns(this.db, query)));
  }

  stats(): Promise<Stats> {
    return this.run(() => this.db.retrying('stats', () => reads.stats(this.db)));
  }

  async cancel(runId: string): Promise<Run> {
    checks.checkRunId(runId);
    return this.run(async () => {
      await cancelRun(this.ctx, runId);
      return this.db.retrying('inspect', () => reads.inspect(this.db, runId));
    });
  }

  async retry(runId: string, nodes?: string[]): Promise<Run> {
    checks.checkRunId(runId);
    checks.checkRetryNodes(nodes);
    return this.run(async () => {
      await retryRun(this.ctx, runId, nodes);
      return this.db.retrying('inspect', () => reads.inspect(this.db, runId));
    });
  }

  async deleteCompletedRunsBefore(ms: number): Promise<number> {
    await this.ensureReady();
    let total = 0;
    // Batches keep each transaction short; each batch adjusts the counters it deleted.
    for (;;) {
      const { rows } = await this.db.retrying('delete completed runs', () =>
        this.db.query<{ n: number }>('delete completed runs', DELETE_COMPLETED_RUNS, [Math.floor(ms)]),
      );
      const n = rows[0]?.n ?? 0;
      total += n;
      if (n < 500) return total;
    }
  }

  // ---- leases and agents

  async grantLease(ttlMs?: number): Promise<Lease> {
    if (ttlMs !== undefined) checks.checkLeaseTtl(ttlMs);
    return this.run(() => leases.grantLease(this.ctx, ttlMs));
  }

  async keepAlive(leaseId: string): Promise<void> {
    checks.checkId('lease id', leaseId);
    return this.run(() => leases.keepAlive(this.ctx, leaseId));
  }

  async revokeLease(leaseId: string): Promise<void> {
    checks.checkId('lease id', leaseId);
    return this.run(() => leases.revokeLease(this.ctx, leaseId));
  }

  async registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    checks.checkId('lease id', leaseId);
    checks.checkAgentRegistration(agent);
    return this.run(() => leases.registerAgent(this.ctx, leaseId, agent));
  }

  async deregisterAgent(agentId: string): Promise<void> {
    checks.checkId('agent id', agentId);
    return this.run(() => leases.deregisterAgent(this.ctx, agentId));
  }

  listAgents(): Promise<AgentInfo[]> {
    return this.run(() => leases.listAgents(this.ctx));
  }

  /** One reaper pass (lapsed leases, their agents and claims); the timer calls it, tests may too. */
  reap(): Promise<{ agents: number; orphaned: number }> {
    return this.run(() => leases.reap(this.ctx));
  }

  /**
   * One pass of the time rules (retries whose delay is over, attempts past
   * their node's timeout, runs past their deadline); the reaper's
   * timer calls it, tests with a moved database clock too.
   */
  sweepTimers(): Promise<{ released: number; timedOut: number; runsTimedOut: number }> {
    return this.run(() => timing.sweepTimers(this.ctx));
  }

  private async sweepTimersQuietly(): Promise<void> {
    if (this.sweepingTimers || this.closed) return;
    this.sweepingTimers = true;
    try {
      await this.sweepTimers();
    } catch (e) {
      this.logger.debug('time sweep failed', { error: (e as Error).message });
    } finally {
      this.sweepingTimers = false;
    }
  }

  private async reapQuietly(): Promise<void> {
    if (this.reaping || this.closed) return;
    this.reaping = true;
    try {
      const r = await this.reap();
      if (r.orphaned > 0) this.logger.debug('orphaned lapsed claims', { count: r.orphaned });
    } catch (e) {
      this.logger.debug('reaper pass failed', { error: (e as Error).message });
    } finally {
      this.reaping = false;
    }
  }

  // ---- claims

  async claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    checks.checkRunId(request.runId);
    checks.checkNodeName(request.node);
    return this.run(() => claimNode(this.ctx, request));
  }

  async finish(request: FinishRequest): Promise<FinishResult> {
    checks.checkRunId(request.runId);
    checks.checkNodeName(request.node);
    if (request.handOff) checks.checkHandOff(request.handOff);
    await this.run(() => finishNode(this.ctx, request));
    return finishedAlone();
  }

  claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    return this.run(() => reads.claimsHeld(this.db, claims));
  }

  release(claims: ClaimRef[]): Promise<boolean[]> {
    return this.run(() => releaseClaims(this.ctx, claims));
  }

  appendOutput(request: AppendOutputRequest): Promise<void> {
    return this.run(() => appendOutput(this.ctx, request));
  }

  // ---- streams

  subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    if (this.closed) throw new UnavailableError('PostgreSQL repository is closed');
    void this.ensureReady().catch(() => {});
    return this.streams.subscribe(options);
  }

  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    if (this.closed) throw new UnavailableError('PostgreSQL repository is closed');
    checks.checkRunId(runId);
    void this.ensureReady().catch(() => {});
    return this.streams.watch(runId, options);
  }

  async ping(): Promise<void> {
    await this.ensureReady();
    await this.db.query('ping', PING);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.streams.closeAll();
    // Notices of transitions already made still go out: other processes are waiting for them.
    await this.ctx.publisher.idle();
    await this.listener.close();
    await this.db.end();
  }
}
