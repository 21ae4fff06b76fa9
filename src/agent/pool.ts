import { randomBytes } from 'node:crypto';
import { hostname as osHostname } from 'node:os';
import { type Logger, silentLogger } from '../log.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { PendingEvents } from '../protocol/pending-events.js';
import {
  type ClaimedNode,
  DEFAULT_LEASE_TTL_MS,
  type NodeEvent,
  type Repository,
} from '../protocol/repository.js';
import { type Runtime, RuntimeRegistry } from '../runtimes/runtime.js';
import { ClaimAhead } from './ahead.js';
import { errorMessage } from './attempt.js';
import type { BackoffOptions } from './backoff.js';
import { LazyAbortController } from './lazy-abort.js';
import { AgentSession } from './session.js';
import {
  type AgentPoolCounters,
  abandonTask,
  type Session,
  type Slot,
  type Task,
  type WorkEnv,
  work,
} from './work.js';

export type { AgentPoolCounters } from './work.js';

export interface AgentPoolOptions {
  repository: Repository;
  runtimes: Runtime[] | RuntimeRegistry;
  /** Attempts run at once; one registered agent per slot. Default 4. */
  concurrency?: number;
  /**
   * Nodes claimed ahead while every slot is busy, so a slot that frees up
   * starts its next node without a round trip (design rule 20). Default the
   * concurrency; 0 turns it off.
   */
  claimAhead?: number;
  /** TTL of the pool's lease: how soon others recover its work if this process dies. Default 10 s. */
  leaseTtlMs?: number;
  /** Default a third of the TTL, so two heartbeats may be lost before the lease lapses. */
  heartbeatIntervalMs?: number;
  /**
   * An attempt of a node without its own timeout (rule 11) that runs longer
   * is recorded as ERROR. Default: no limit (0 too).
   */
  runtimeTimeoutMs?: number;
  hostname?: string;
  /** Prefix of the agent ids; default `<hostname>-<pid>-<random>`. */
  id?: string;
  logger?: Logger;
  /** On stop, after the grace period, how long aborted work may take to report. Default 2 s. */
  abortWaitMs?: number;
  backoff?: BackoffOptions;
}

type State = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * An agent process's workers (the dispatch; its lease, heartbeats and
 * subscription are the session's, session.ts). One lease for the whole process, kept alive by
 * heartbeats; one registered agent per slot, so ListAgents shows the capacity
 * a process offers and each attempt's agent id names the slot that claimed it; one
 * subscription for all its runtimes, whose events feed free slots. Each slot
 * claims (losing a race just moves on), runs the runtime under a timeout and
 * finishes with its claim; while every slot is busy the pool claims a few
 * nodes ahead for them (ahead.ts, design rule 20). Store errors are retried,
 * never fatal.
 */
export class AgentPool {
  private readonly repository: Repository;
  private readonly registry: RuntimeRegistry;
  private readonly leaseTtlMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly runtimeTimeoutMs: number | undefined;
  private readonly hostname: string;
  private readonly logger: Logger;
  private readonly abortWaitMs: number;
  private readonly backoffOptions: BackoffOptions;
  private readonly slots: Slot[];
  /** Events waiting for a free slot, one per node: claims decide ownership, so duplicates add nothing. */
  private readonly pending: PendingEvents;
  private readonly idleWaiters = new Set<() => void>();
  private readonly counts: AgentPoolCounters = {
    claimed: 0,
    orphansRecovered: 0,
    finished: { SUCCESS: 0, FAIL: 0, ERROR: 0 },
    conflicts: 0,
    claimsLost: 0,
    leasesLost: 0,
    claimedAhead: 0,
    released: 0,
    handedOff: 0,
  };
  private state: State = 'idle';
  /** Nodes in hand: claiming, running or being recorded; a count because the dispatch path reads it per node. */
  private busy = 0;
  private claiming = false;
  private readonly sessions: AgentSession;
  private stopping?: Promise<void>;
  /** Aborted at the very end of stop: ends every backoff wait. */
  private readonly halt = new AbortController();
  private readonly env: WorkEnv;
  private readonly ahead: ClaimAhead;
  /** Tasks whose slot moved on while their results are being recorded. */
  private readonly recording = new Set<Task>();
  private readonly recordingBound: number;

  constructor(options: AgentPoolOptions) {
    this.repository = options.repository;
    this.registry =
      options.runtimes instanceof RuntimeRegistry ? options.runtimes : new RuntimeRegistry(options.runtimes);
    if (this.registry.size === 0) throw new InvalidArgumentError('an agent pool needs at least one runtime');
    const concurrency = options.concurrency ?? 4;
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new InvalidArgumentError(`concurrency must be a whole number >= 1, got ${concurrency}`);
    const claimAhead = options.claimAhead ?? concurrency;
    if (!Number.isInteger(claimAhead) || claimAhead < 0)
      throw new InvalidArgumentError(`claimAhead must be a whole number >= 0, got ${claimAhead}`);
    this.recordingBound = RECORDINGS_PER_SLOT * concurrency + claimAhead;
    this.pending = new PendingEvents(Math.max(MIN_PENDING, PENDING_PER_SLOT * concurrency));
    this.leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? Math.max(1, Math.floor(this.leaseTtlMs / 3));
    // A heartbeat no sooner than the TTL lets the lease lapse between beats: every claim would be recovered.
    if (!(this.heartbeatIntervalMs > 0 && this.heartbeatIntervalMs < this.leaseTtlMs))
      throw new InvalidArgumentError(
        `heartbeatIntervalMs must be above 0 and below leaseTtlMs (${this.leaseTtlMs}), got ${this.heartbeatIntervalMs}`,
      );
    if (options.runtimeTimeoutMs !== undefined && !(options.runtimeTimeoutMs >= 0))
      throw new InvalidArgumentError(
        `runtimeTimeoutMs must be 0 (none) or more, got ${options.runtimeTimeoutMs}`,
      );
    this.runtimeTimeoutMs = options.runtimeTimeoutMs || undefined;
    this.hostname = options.hostname ?? osHostname();
    this.logger = options.logger ?? silentLogger;
    this.abortWaitMs = options.abortWaitMs ?? 2000;
    this.backoffOptions = options.backoff ?? {};
    const prefix = options.id ?? `${this.hostname}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.slots = Array.from({ length: concurrency }, (_, i) => ({ agentId: `${prefix}-${i + 1}` }));
    this.env = {
      repository: this.repository,
      registry: this.registry,
      logger: this.logger,
      runtimeTimeoutMs: this.runtimeTimeoutMs,
      backoff: this.backoffOptions,
      counts: this.counts,
      claiming: () => this.claiming,
      leaseLost: (session, error) => this.sessions.leaseLost(session, error),
      vacate: (task) => this.vacate(task),
      // A store that never hands off is offered nothing: building an offer per finish would be work for nothing.
      offer: this.repository.handsOff ? (session) => this.ahead.offer(session) : () => undefined,
      offerDone: (offer) => this.ahead.offerDone(offer),
      handedOff: (session, nodes) => this.ahead.handedOff(session, nodes),
    };
    const pool = this;
    this.ahead = new ClaimAhead(claimAhead, {
      repository: this.repository,
      logger: this.logger,
      slots: this.slots,
      counts: this.counts,
      session: () => this.session,
      nextEvent: () => this.nextEvent(),
      pendingEvents: () => this.pending.size,
      putBack: (event) => {
        if (this.claiming) this.pending.set(event);
      },
      leaseLost: (session, error) => this.sessions.leaseLost(session, error),
      changed: () => this.pump(),
      freeSlots: () => {
        let free = 0;
        for (const s of this.slots) if (!s.task) free++;
        return free;
      },
      runtimes: this.registry.names,
      claiming: () => this.claiming,
    });
    this.sessions = new AgentSession(
      {
        repository: this.repository,
        registry: this.registry,
        slots: this.slots,
        leaseTtlMs: this.leaseTtlMs,
        heartbeatIntervalMs: this.heartbeatIntervalMs,
        hostname: this.hostname,
        logger: this.logger,
        backoff: this.backoffOptions,
        counts: this.counts,
      },
      {
        get claiming() {
          return pool.claiming;
        },
        halt: this.halt.signal,
        event: (event, session) => this.enqueue(event, session),
        lost: (session) => {
          for (const task of [...session.tasks]) this.abandon(task, new Error('agent lost its lease'));
          this.pending.clear();
          this.ahead.lost(session);
        },
        abandon: (task, reason) => this.abandon(task, reason),
        queued: (session) => this.ahead.queued(session),
        drop: (queued) => this.ahead.drop(queued),
      },
    );
  }

  private get session(): Session | undefined {
    return this.sessions.current;
  }

  /** Nodes in hand: being claimed, run, or recorded. */
  get running(): number {
    return this.busy;
  }

  get counters(): AgentPoolCounters {
    return { ...this.counts, finished: { ...this.counts.finished } };
  }

  get agentIds(): string[] {
    return this.slots.map((s) => s.agentId);
  }

  /** The current lease's id; undefined while (re)registering or after stop. */
  get leaseId(): string | undefined {
    return this.session?.lease.id;
  }

  get runtimes(): string[] {
    return this.registry.names;
  }

  /** Grants the lease, registers the agents and starts claiming. Retries while the store is unavailable. */
  async start(): Promise<void> {
    if (this.state !== 'idle') throw new InvalidArgumentError(`agent pool cannot start: it is ${this.state}`);
    this.state = 'running';
    this.claiming = true;
    try {
      await this.sessions.open(false);
    } catch (e) {
      this.claiming = false;
      this.state = 'stopped';
      throw e;
    }
  }

  /**
   * Stops claiming, lets running work finish within `graceMs`, then aborts the
   * rest (its runtimes see ctx.signal abort), deregisters and revokes the lease.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.state === 'idle' || this.state === 'stopped') {
      this.state = 'stopped';
      return Promise.resolve();
    }
    this.stopping ??= this.shutdown(options.graceMs ?? 10_000);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.state = 'stopping';
    this.claiming = false;
    this.pending.clear();
    this.logger.debug('agent pool stopping', { running: this.running, graceMs });
    this.session?.subscription.abort();
    // What was claimed ahead never started: others may run it now (rule 20).
    const releasing = this.ahead.releaseAll();
    if (!(await this.waitIdle(graceMs))) {
      this.logger.info('grace period over; interrupting running work', { running: this.running });
      for (const s of this.slots) s.task?.controller.abort(new Error('agent shutting down'));
      if (!(await this.waitIdle(this.abortWaitMs)))
        for (const t of [...this.slots.map((s) => s.task), ...this.recording])
          if (t) this.abandon(t, new Error('agent shut down'));
    }
    await releasing;
    // Finishes that came back meanwhile may have handed off nodes: given back before the lease goes.
    await this.ahead.releaseAll();
    this.halt.abort();
    await this.sessions.opening?.catch(() => undefined);
    const session = this.session;
    this.sessions.current = undefined;
    if (session) {
      session.ended.abort();
      session.subscription.abort();
      await Promise.allSettled(this.slots.map((s) => this.repository.deregisterAgent(s.agentId)));
      await this.repository.revokeLease(session.lease.id).catch((e: unknown) => {
        this.logger.warn('could not revoke lease; it will lapse', {
          lease: session.lease.id,
          error: errorMessage(e),
        });
      });
    }
    this.state = 'stopped';
    this.logger.debug('agent pool stopped', { counters: this.counters });
  }

  // ---- dispatch

  /**
   * Takes an event from the subscription; with the pending bound reached,
   * answers a promise the subscription waits on before it delivers more,
   * resolved once half of them are taken (or the pool stops taking work and
   * drops them). Slots take events far faster than the work runs, so that
   * many keep every slot and the claim-ahead queue fed; a store that reads a
   * backlog page by page then leaves the rest in the store.
   */
  private enqueue(event: NodeEvent, session: Session): Promise<void> | undefined {
    if (!this.claiming || this.session !== session) return undefined;
    this.pending.add(event);
    this.pump();
    return this.claiming && this.pending.full() ? this.pending.room() : undefined;
  }

  private nextEvent(): NodeEvent | undefined {
    return this.pending.take();
  }

  /**
   * Free slots take claimed-ahead nodes first, then claim for themselves;
   * with every slot busy and events left over, the pool claims ahead.
   */
  private pump(): void {
    for (const slot of this.slots) {
      const session = this.session;
      if (!this.claiming || !session) return;
      if (slot.task) continue;
      const queued = this.ahead.take(session);
      if (queued) {
        this.launch(slot, queued.event, session, queued.claimed, queued.at);
        continue;
      }
      const event = this.nextEvent();
      if (!event) break;
      this.launch(slot, event, session);
    }
    const session = this.session;
    if (this.claiming && session && this.pending.size > 0) this.ahead.fill(session);
  }

  private launch(
    slot: Slot,
    event: NodeEvent,
    session: Session,
    preclaimed?: ClaimedNode,
    claimedAt?: number,
  ): void {
    const task: Task = {
      slot,
      session,
      event,
      controller: new LazyAbortController(),
      abandoned: false,
      preclaimed,
      claimedAt,
    };
    slot.task = task;
    this.busy++;
    session.tasks.add(task);
    void this.run(task);
  }

  /** One async frame per node: cheaper than a then() with two handlers on work's promise. */
  private async run(task: Task): Promise<void> {
    try {
      await work(task, this.env);
    } catch (e) {
      this.logger.error('agent task failed unexpectedly', { error: errorMessage(e) });
    }
    this.release(task);
  }

  /** Stop waiting for a task whose result cannot be recorded; its slot is free at once. */
  private abandon(task: Task, reason: Error): void {
    if (task.abandoned) return;
    abandonTask(task, reason);
    this.release(task);
  }

  /**
   * The task's runtime is done and its result is being recorded: a round trip
   * the slot need not sit out, so it takes its next node now. At most
   * RECORDINGS_PER_SLOT × concurrency results are recorded at once, so a slow
   * store cannot pile up results in memory; past that a slot waits for its own.
   */
  private vacate(task: Task): void {
    const slot = task.slot;
    if (slot.task !== task || this.recording.size >= this.recordingBound) return;
    slot.task = undefined;
    this.recording.add(task);
    this.pump();
  }

  private release(task: Task): void {
    if (task.released) return;
    task.released = true;
    task.session.tasks.delete(task);
    const slot = task.slot;
    if (slot.task === task) slot.task = undefined;
    else this.recording.delete(task);
    this.busy--;
    if (this.busy === 0) for (const w of [...this.idleWaiters]) w();
    this.pump();
  }

  /** True when every slot is free, false after `ms`. */
  private waitIdle(ms: number): Promise<boolean> {
    if (this.running === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(waiter);
        resolve(idle);
      };
      const waiter = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.idleWaiters.add(waiter);
    });
  }
}

/**
 * Results being recorded per slot, pool-wide (a slot may have several while
 * another waits on none), and as many again as the claim-ahead bound. Finishes
 * of no-op work arrive faster than one round trip records them; with one per
 * slot, slots sat out every other finish's round trip. Four let a finish batch
 * fill while every slot keeps working (bench/pg-width-ab.ts against one per
 * slot, 2026-11-29: 1.2–1.4× the nodes/s on PostgreSQL). The claim-ahead
 * share lets a queue's worth of short nodes run while their results record,
 * so a large queue makes large finish batches too (a queue of 500 on
 * PostgreSQL: 8,833 against 6,717 one-node runs/s with four per slot alone,
 * 2026-11-29); their nodes are held already, so memory stays bounded by it.
 */
const RECORDINGS_PER_SLOT = 4;

/** Events waiting for a slot past which the pool holds its subscription back: per slot, and at least. */
const PENDING_PER_SLOT = 64;
const MIN_PENDING = 1_024;
