import type { Logger } from '../log.js';
import { LeaseExpiredError, NotFoundError, UnavailableError } from '../protocol/errors.js';
import type { Lease, NodeEvent, Repository } from '../protocol/repository.js';
import type { RuntimeRegistry } from '../runtimes/runtime.js';
import { sleep } from '../runtimes/sleep.js';
import type { Queued } from './ahead.js';
import { errorMessage } from './attempt.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { AgentPoolCounters, Session, Slot, Task } from './work.js';

/** What the session needs of the pool it serves. */
export interface SessionHost {
  /** Whether the pool still takes work (false once stopping). */
  readonly claiming: boolean;
  /** Aborted at the very end of stop: ends every backoff wait. */
  readonly halt: AbortSignal;
  /**
   * A NODE_READY or NODE_ORPHANED event from this session's subscription;
   * a promise answered means "enough waiting": the subscription delivers
   * nothing more until it resolves.
   */
  event(event: NodeEvent, session: Session): Promise<void> | undefined;
  /** The session's lease is gone: its work cannot be recorded any more. */
  lost(session: Session): void;
  /** Stops waiting for a task; its slot is free at once. */
  abandon(task: Task, reason: Error): void;
  /** The session's claimed-ahead nodes not started yet (rule 20). */
  queued(session: Session): Queued[];
  /** A queued claim no longer holds: it is not run. */
  drop(queued: Queued): void;
}

export interface SessionOptions {
  repository: Repository;
  registry: RuntimeRegistry;
  slots: Slot[];
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  hostname: string;
  logger: Logger;
  backoff: BackoffOptions;
  counts: AgentPoolCounters;
}

/**
 * An agent pool's standing with the store: one lease for the process, its
 * slots registered as agents under it, heartbeats that keep it alive (and
 * with each, a check for claims the store no longer holds), one subscription
 * for all its runtimes; when the lease is lost, a new session. What to do with
 * the work (dispatch) is the pool's.
 */
export class AgentSession {
  /** The live session; undefined while (re)registering or after stop. */
  current?: Session;
  /** A session being opened. */
  opening?: Promise<Session | undefined>;
  private readonly repository: Repository;
  private readonly registry: RuntimeRegistry;
  private readonly slots: Slot[];
  private readonly leaseTtlMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly hostname: string;
  private readonly logger: Logger;
  private readonly backoffOptions: BackoffOptions;
  private readonly counts: AgentPoolCounters;

  constructor(
    options: SessionOptions,
    private readonly host: SessionHost,
  ) {
    this.repository = options.repository;
    this.registry = options.registry;
    this.slots = options.slots;
    this.leaseTtlMs = options.leaseTtlMs;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.hostname = options.hostname;
    this.logger = options.logger;
    this.backoffOptions = options.backoff;
    this.counts = options.counts;
  }

  /** Grants a lease and registers the agents, retrying while the store is away. `background`: retry every error. */
  open(background: boolean): Promise<Session | undefined> {
    const opening = (async () => {
      const backoff = new Backoff(this.backoffOptions);
      while (this.host.claiming) {
        let lease: Lease | undefined;
        try {
          lease = await this.repository.grantLease(this.leaseTtlMs);
          const l = lease;
          const runtimes = this.registry.names.map((name) => ({ name }));
          await Promise.all(
            this.slots.map((s) =>
              this.repository.registerAgent(l.id, { id: s.agentId, runtimes, hostname: this.hostname }),
            ),
          );
        } catch (e) {
          if (lease) void this.repository.revokeLease(lease.id).catch(() => undefined);
          const transient = e instanceof UnavailableError || e instanceof LeaseExpiredError;
          if (!transient && !background) throw e;
          this.logger.warn('could not register agents; retrying', { error: errorMessage(e) });
          await sleep(backoff.next(), this.host.halt);
          continue;
        }
        if (!this.host.claiming) {
          void this.repository.revokeLease(lease.id).catch(() => undefined);
          return undefined;
        }
        const session: Session = {
          lease,
          ended: new AbortController(),
          subscription: new AbortController(),
          tasks: new Set(),
        };
        this.current = session;
        this.logger.debug('lease granted; agents registered', {
          lease: lease.id,
          ttlMs: lease.ttlMs,
          agents: this.slots.length,
          runtimes: this.registry.names,
        });
        void this.heartbeat(session);
        void this.subscribe(session);
        return session;
      }
      return undefined;
    })();
    this.opening = opening;
    return opening.finally(() => {
      if (this.opening === opening) this.opening = undefined;
    });
  }

  private async heartbeat(session: Session): Promise<void> {
    const backoff = new Backoff(this.backoffOptions);
    let delay = this.heartbeatIntervalMs;
    while (await sleep(delay, session.ended.signal)) {
      try {
        await this.repository.keepAlive(session.lease.id);
        backoff.reset();
        delay = this.heartbeatIntervalMs;
        void this.stopLostClaims(session);
      } catch (e) {
        if (session.ended.signal.aborted) return;
        if (e instanceof LeaseExpiredError || e instanceof NotFoundError) return this.leaseLost(session, e);
        this.logger.warn('heartbeat failed; retrying', { lease: session.lease.id, error: errorMessage(e) });
        delay = Math.min(backoff.next(), this.heartbeatIntervalMs);
      }
    }
  }

  private async subscribe(session: Session): Promise<void> {
    const backoff = new Backoff(this.backoffOptions);
    const signal = session.subscription.signal;
    while (!signal.aborted) {
      try {
        this.logger.debug('subscribed', { runtimes: this.registry.names });
        for await (const event of this.repository.subscribe({ runtimes: this.registry.names, signal })) {
          backoff.reset();
          const room = this.host.event(event, session);
          if (room) await untilAborted(room, signal);
        }
        if (signal.aborted) return;
        this.logger.debug('subscription ended; resubscribing');
      } catch (e) {
        if (signal.aborted) return;
        this.logger.warn('subscription failed; resubscribing', { error: errorMessage(e) });
      }
      // Resubscribing replays every node READY now (rule 8), so nothing is missed meanwhile.
      await sleep(backoff.next(), signal);
    }
  }

  /**
   * With each heartbeat: stops attempts whose claim the store no longer holds
   * (the run was cancelled, or the claim lapsed and the node moved on). Their
   * results would be refused, so the runtime is aborted (an exec command is
   * killed) and the slot freed at once instead of when the work would end.
   */
  private async stopLostClaims(session: Session): Promise<void> {
    const running = (t: Task | undefined): t is Task => !!t?.claim && !t.finishing && t.session === session;
    const tasks = this.slots.flatMap((s) => (running(s.task) ? [s.task] : []));
    const queued = this.host.queued(session);
    if (tasks.length === 0 && queued.length === 0) return;
    let held: boolean[];
    try {
      held = await this.repository.claimsHeld([...tasks.map((t) => t.claim!), ...queued.map((q) => q.claim)]);
    } catch (e) {
      this.logger.debug('could not check claims; next heartbeat will', { error: errorMessage(e) });
      return;
    }
    queued.forEach((q, i) => {
      if (held[tasks.length + i]) return;
      this.logger.info('claimed-ahead node no longer held (run cancelled or claim lapsed): dropped', {
        runId: q.claim.runId,
        node: q.claim.node,
        claim: q.claim.claimId,
      });
      this.host.drop(q);
    });
    tasks.forEach((task, i) => {
      if (held[i] || task.abandoned || task.finishing || task.slot.task !== task) return;
      this.counts.claimsLost++;
      this.logger.info('claim no longer held (run cancelled or claim lapsed): stopping the attempt', {
        runId: task.claim!.runId,
        node: task.claim!.node,
        claim: task.claim!.claimId,
        agent: task.slot.agentId,
      });
      this.host.abandon(task, new Error('claim no longer held: the run was cancelled or the claim lapsed'));
    });
  }

  /** The lease lapsed: every claim under it is orphaned already, so drop that work and start over. */
  leaseLost(session: Session, error: unknown): void {
    if (this.current !== session) return;
    this.current = undefined;
    this.counts.leasesLost++;
    this.logger.warn('lease lost; abandoning running work and registering again', {
      lease: session.lease.id,
      running: session.tasks.size,
      error: errorMessage(error),
    });
    session.ended.abort();
    session.subscription.abort();
    this.host.lost(session);
    if (this.host.claiming)
      this.open(true).catch((e: unknown) =>
        this.logger.error('could not register agents again', { error: errorMessage(e) }),
      );
  }
}

/** Resolves when `promise` does or the signal aborts, whichever is first. */
function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = () => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
