import type { Logger, LogLevel } from '../log.js';
import { concatBytes } from '../model/limits.js';
import { nodeTimeoutMs, orphanRecoveredMessage } from '../model/rules.js';
import {
  ClaimConflictError,
  LeaseExpiredError,
  NotFoundError,
  UnavailableError,
} from '../protocol/errors.js';
import type {
  ClaimedNode,
  ClaimRef,
  FinishConclusion,
  FinishRequest,
  HandOff,
  Lease,
  NodeEvent,
  Repository,
} from '../protocol/repository.js';
import type { RuntimeRegistry } from '../runtimes/runtime.js';
import { sleep } from '../runtimes/sleep.js';
import { type AttemptOutcome, errorMessage, errorOutcome, runAttempt, timeoutOutcome } from './attempt.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import type { LazyAbortController } from './lazy-abort.js';
import { OutputStream } from './output-stream.js';

export interface AgentPoolCounters {
  claimed: number;
  /** Orphaned nodes this pool recovered (recorded as ERROR). */
  orphansRecovered: number;
  finished: Record<FinishConclusion, number>;
  /** Results the store refused: the run was cancelled or the claim had lapsed. */
  conflicts: number;
  /** Attempts stopped while running because their claim was no longer held (run cancelled, claim lapsed). */
  claimsLost: number;
  leasesLost: number;
  /** Nodes claimed ahead of a free slot (rule 20). */
  claimedAhead: number;
  /** Claimed-ahead nodes given back unstarted on stop (rule 20). */
  released: number;
  /** Dependents claimed for this process by its own finishes (rule 21). */
  handedOff: number;
}

export interface Session {
  lease: Lease;
  /** Ends heartbeats and subscription when the lease is gone or the pool stopped. */
  ended: AbortController;
  subscription: AbortController;
  tasks: Set<Task>;
}

export interface Slot {
  agentId: string;
  /** The node this slot is claiming or running. */
  task?: Task;
}

export interface Task {
  slot: Slot;
  session: Session;
  event: NodeEvent;
  /** Aborts the runtime: timeout, shutdown, lease lost. */
  controller: LazyAbortController;
  /** Set once the result can no longer be recorded (lease lost, shutdown past its grace). */
  abandoned: boolean;
  /** Set once the pool has let go of the task (done or abandoned). */
  released?: boolean;
  /** The task's claim, once it has one. */
  claim?: ClaimRef;
  /** Claimed ahead of a free slot (rule 20): the task starts from this claim instead of claiming. */
  preclaimed?: ClaimedNode;
  /** When the preclaimed node's claim came back (performance.now()): its timeout counts from there (rule 11). */
  claimedAt?: number;
  /** When a claimed-ahead node's work really started (ms), reported with its finish (rule 20). */
  startedAt?: number;
  /** Set once its result is being recorded: the claim's fate is the finish's to learn then. */
  finishing?: boolean;
  /** Stops the running attempt's wait, when one is running. */
  stopWaiting?: { stop(): void };
  /** Ends backoff sleeps on abandonment; made on first use, as most tasks never back off. */
  abandonedSignal?: AbortController;
}

/** Marks the task abandoned: its attempt stops being awaited and its backoff sleeps end. */
export function abandonTask(task: Task, reason: Error): void {
  if (task.abandoned) return;
  task.abandoned = true;
  task.controller.abort(reason);
  task.abandonedSignal?.abort(reason);
  task.stopWaiting?.stop();
}

function abandonedSignal(task: Task): AbortSignal {
  task.abandonedSignal ??= new AbortController();
  if (task.abandoned) task.abandonedSignal.abort();
  return task.abandonedSignal.signal;
}

/** What the pool lends each task. */
export interface WorkEnv {
  repository: Repository;
  registry: RuntimeRegistry;
  logger: Logger;
  /** The timeout of nodes without their own (rule 11); undefined: no limit. */
  runtimeTimeoutMs?: number;
  backoff: BackoffOptions;
  counts: AgentPoolCounters;
  /** False once the pool stops claiming. */
  claiming(): boolean;
  /** The store said the session's lease is gone. */
  leaseLost(session: Session, error: unknown): void;
  /** The task's result is known and about to be recorded: its slot may take the next node meanwhile. */
  vacate(task: Task): void;
  /** Rule 21: what this finish may take over of the nodes it makes READY. */
  offer(session: Session): HandOff | undefined;
  /** The finish that carried this offer is back, handed off or not. */
  offerDone(offer: HandOff): void;
  /** Claims a finish handed off: queued for the slots. */
  handedOff(session: Session, nodes: ClaimedNode[]): void;
}

/**
 * One node in one slot: claim it (losing the race just ends here), recover it
 * if it was orphaned, run its runtime under the timeout, finish with the claim.
 * Store errors that may pass are retried with backoff; the rest are logged.
 */
export async function work(task: Task, env: WorkEnv): Promise<void> {
  const { session, slot } = task;
  const log = new TaskLog(env.logger, task);
  const claimed = task.preclaimed ?? (await claim(env, task, log));
  if (!claimed || task.abandoned) return;
  env.counts.claimed++;
  task.claim = { runId: claimed.runId, node: claimed.node.spec.name, claimId: claimed.claimId };
  log.claimed = claimed;
  if (claimed.orphan) {
    // Rule 3: the previous holder's lease lapsed; record that as an ERROR attempt, then rule 5 applies.
    env.counts.orphansRecovered++;
    const message = orphanRecoveredMessage(claimed, slot.agentId);
    log.debug('orphan claimed', { previousClaim: claimed.previousClaimId });
    return finish(env, task, claimed, errorOutcome(message), log);
  }
  const runtime = env.registry.get(claimed.node.spec.runtime);
  if (!runtime) {
    const message = `agent ${slot.agentId} has no runtime "${claimed.node.spec.runtime}"`;
    return finish(env, task, claimed, errorOutcome(message), log);
  }
  if (log.debugging) log.debug('node claimed', { runtime: runtime.name });
  // Made on the first write: most attempts stream nothing, and an idle stream's
  // close still costs a few promise hops per attempt (measurable in npm run bench).
  let output: OutputStream | undefined;
  let ended = false; // a write after the attempt (a runaway callback) is dropped, as a closed stream drops it
  const ref = task.claim;
  // Only a claimed-ahead node waited between its claim and now; others started at their claim.
  if (task.preclaimed) task.startedAt = Date.now();
  // Rule 11: the node's own timeout counts from its claim, so what a claimed-ahead node spent queued is spent.
  const spec = claimed.node.spec;
  const nodeTimeout = nodeTimeoutMs(spec);
  const timeLeft =
    nodeTimeout === undefined
      ? undefined
      : nodeTimeout - (task.claimedAt === undefined ? 0 : performance.now() - task.claimedAt);
  if (spec.timeout && timeLeft !== undefined && timeLeft <= 0) {
    // Timed out in the queue: the store times the attempt out too; running it now would only overlap a retry.
    return finish(
      env,
      task,
      claimed,
      timeoutOutcome(runtime.name, nodeTimeout!, { node: spec.timeout }),
      log,
    );
  }
  const ran = await runAttempt(
    runtime,
    {
      runId: claimed.runId,
      node: claimed.node,
      attempt: claimed.attempt,
      claimId: claimed.claimId,
      // A getter: the controller is made only for runtimes that read the signal.
      get signal() {
        return task.controller.signal;
      },
      logger: log,
      write: (chunk) => {
        if (ended) return;
        output ??= new OutputStream(env.repository, ref, log);
        output.write(chunk);
      },
    },
    // Rule 11: the node's own timeout; the agent's only for nodes without one.
    spec.timeout
      ? {
          timeoutMs: timeLeft,
          timeoutSource: { node: spec.timeout },
          controller: task.controller,
          holder: task,
        }
      : { timeoutMs: env.runtimeTimeoutMs, controller: task.controller, holder: task },
  );
  task.stopWaiting = undefined;
  // What the store did not take while the attempt ran goes in front of the finish output.
  ended = true;
  const unsent = output ? await output.close() : undefined;
  const outcome =
    ran && unsent && unsent.byteLength > 0 ? { ...ran, output: concatBytes([unsent, ran.output]) } : ran;
  if (!outcome || task.abandoned) {
    log.debug('result dropped: the claim was lost with the lease', { lease: session.lease.id });
    return;
  }
  await finish(env, task, claimed, outcome, log);
}

/**
 * A task's logger: its lines carry the run, node and agent, and once claimed
 * the attempt and claim. The child loggers are made on the first line written,
 * not per node: most nodes write none (debug is off).
 */
class TaskLog implements Logger {
  claimed?: ClaimedNode;
  private made?: Logger;
  private madeFor?: ClaimedNode;

  constructor(
    private readonly parent: Logger,
    private readonly task: Task,
  ) {}

  /** False when debug lines are dropped anyway: callers skip building their fields. */
  get debugging(): boolean {
    return this.parent.enabled?.('debug') ?? true;
  }

  private get logger(): Logger {
    if (this.made && this.madeFor === this.claimed) return this.made;
    const { event, slot } = this.task;
    let log = this.parent.child({ runId: event.runId, node: event.node, agent: slot.agentId });
    if (this.claimed) log = log.child({ attempt: this.claimed.attempt, claim: this.claimed.claimId });
    this.made = log;
    this.madeFor = this.claimed;
    return log;
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    if (this.debugging) this.logger.debug(msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.logger.info(msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.logger.warn(msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.logger.error(msg, fields);
  }
  child(fields: Record<string, unknown>): Logger {
    return this.logger.child(fields);
  }
  enabled(level: LogLevel): boolean {
    return this.parent.enabled?.(level) ?? true;
  }
}

async function claim(env: WorkEnv, task: Task, log: Logger): Promise<ClaimedNode | undefined> {
  const { event, session, slot } = task;
  let backoff: Backoff | undefined; // made on the first retry: most claims never retry
  while (env.claiming() && !task.abandoned) {
    try {
      const claimed = await env.repository.claim({
        runId: event.runId,
        node: event.node,
        leaseId: session.lease.id,
        agentId: slot.agentId,
      });
      if (!claimed) log.debug('claim lost: node taken or no longer claimable');
      return claimed;
    } catch (e) {
      if (e instanceof LeaseExpiredError) {
        env.leaseLost(session, e);
        return undefined;
      }
      if (e instanceof NotFoundError) {
        log.debug('claim skipped: run or node is gone');
        return undefined;
      }
      if (!(e instanceof UnavailableError)) {
        log.warn('claim failed', { error: errorMessage(e) });
        return undefined;
      }
      log.warn('claim failed; retrying', { error: errorMessage(e) });
      backoff ??= new Backoff(env.backoff);
      await sleep(backoff.next(), abandonedSignal(task));
    }
  }
  return undefined;
}

/** The ERROR recorded in place of a result the store refused for good; its output says why. */
function unrecordableOutcome(refused: AttemptOutcome, e: unknown): AttemptOutcome & { unrecordable: true } {
  const why = `the store refused this attempt's ${refused.conclusion} result: ${errorMessage(e)}`;
  return { conclusion: 'ERROR', output: new TextEncoder().encode(why), metadata: {}, unrecordable: true };
}

async function finish(
  env: WorkEnv,
  task: Task,
  claimed: ClaimedNode,
  outcome: AttemptOutcome & { unrecordable?: true },
  log: TaskLog,
): Promise<void> {
  task.finishing = true;
  env.vacate(task);
  let backoff: Backoff | undefined; // made on the first retry: most finishes never retry
  while (!task.abandoned) {
    try {
      const request: FinishRequest = {
        runId: claimed.runId,
        node: claimed.node.spec.name,
        claimId: claimed.claimId,
        conclusion: outcome.conclusion,
        output: outcome.output,
        metadata: outcome.metadata,
      };
      if (task.startedAt !== undefined) request.startedAt = task.startedAt;
      const offer = env.offer(task.session);
      if (offer) request.handOff = offer;
      try {
        const { handedOff } = await env.repository.finish(request);
        if (handedOff.length > 0) env.handedOff(task.session, handedOff);
      } finally {
        if (offer) env.offerDone(offer);
      }
      env.counts.finished[outcome.conclusion]++;
      if (log.debugging) log.debug('node finished', { conclusion: outcome.conclusion });
      return;
    } catch (e) {
      if (e instanceof ClaimConflictError) {
        env.counts.conflicts++;
        log.info('result refused: the claim is no longer live (run cancelled or claim lapsed)', {
          conclusion: outcome.conclusion,
        });
        return;
      }
      if (e instanceof NotFoundError) {
        log.info('result dropped: the run is gone');
        return;
      }
      if (!(e instanceof UnavailableError)) {
        if (!outcome.unrecordable) {
          // The store refused this result for good (too large, not storable): record the attempt as an ERROR
          // that says why, rather than leave the node RUNNING under this process's live lease for as long as
          // it lives (rule 3 would never recover it).
          log.error('finish refused; recording the attempt as an ERROR', { error: errorMessage(e) });
          outcome = unrecordableOutcome(outcome, e);
          continue;
        }
        log.error('finish failed', { error: errorMessage(e) });
        return;
      }
      log.warn('finish failed; retrying', { error: errorMessage(e) });
      backoff ??= new Backoff(env.backoff);
      await sleep(backoff.next(), abandonedSignal(task));
    }
  }
}
