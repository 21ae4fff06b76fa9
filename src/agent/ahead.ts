import type { Logger } from '../log.js';
import { MAX_HAND_OFF } from '../model/requests.js';
import { orphanRecoveredMessage } from '../model/rules.js';
import { LeaseExpiredError, NotFoundError } from '../protocol/errors.js';
import type { ClaimedNode, ClaimRef, HandOff, NodeEvent, Repository } from '../protocol/repository.js';
import { errorMessage } from './attempt.js';
import type { AgentPoolCounters, Session, Slot } from './work.js';

/** A node claimed before a slot was free for it. */
export interface Queued {
  session: Session;
  /** The node as an event, for the task that runs it. */
  event: NodeEvent;
  claimed: ClaimedNode;
  claim: ClaimRef;
  /** When the claim came back (performance.now()): rule 11 counts the node's timeout from its claim. */
  at: number;
}

/** What claiming ahead needs of the pool. */
export interface AheadHost {
  repository: Repository;
  logger: Logger;
  slots: Slot[];
  counts: AgentPoolCounters;
  /** The live session, if any. */
  session(): Session | undefined;
  /** The next event waiting for a slot (taken from the pool's pending events), if any. */
  nextEvent(): NodeEvent | undefined;
  /** How many events wait for a slot. */
  pendingEvents(): number;
  /** An event whose claim could not be tried: it waits for a slot like any other. */
  putBack(event: NodeEvent): void;
  leaseLost(session: Session, error: unknown): void;
  /** The queue changed: free slots may take from it. */
  changed(): void;
  /** Slots with no node in hand now. */
  freeSlots(): number;
  /** The runtimes this process runs. */
  runtimes: string[];
  /** False once the pool stops claiming. */
  claiming(): boolean;
}

/**
 * Places one finish is offered at most (rule 21): enough for a fan-out's
 * share, not so many that the first of several concurrent finishes holds
 * every place while the others, offered none, announce their dependents.
 */
const PER_FINISH = Math.min(8, MAX_HAND_OFF);

/** After a claim ahead failed on a store error, the slots' own claims (which back off) carry on alone this long. */
const PAUSE_MS = 1_000;

/**
 * Claim-ahead (design rule 20): while every slot is busy, the process claims
 * up to `bound` more nodes into a local queue, so a slot that frees up starts
 * its next node at once instead of after a claim's round trip. Queued claims
 * are ordinary claims under the process's lease: if the process dies they are
 * orphaned and recovered like any other (rule 3); the heartbeat's claimsHeld
 * check drops those that no longer hold (a cancelled run); on stop the queue
 * is given back with `release`, so other agents run those nodes at once.
 */
export class ClaimAhead {
  private queue: Queued[] = [];
  private inFlight = 0;
  /** Places of hand-off offers whose finishes are on their way (offer, offerDone). */
  private offered = 0;
  private readonly claiming = new Set<Promise<void>>();
  /** Give-backs of what finishes handed off while the pool was stopping (releaseAll waits for them). */
  private readonly returning = new Set<Promise<void>>();
  private pausedUntil = 0;
  private turn = 0;

  constructor(
    private readonly bound: number,
    private readonly host: AheadHost,
  ) {}

  /** The oldest queued claim of this session; any of an older session is dropped (orphaned with its lease). */
  take(session: Session): Queued | undefined {
    while (this.queue.length > 0) {
      const q = this.queue.shift()!;
      if (q.session === session) return q;
    }
    return undefined;
  }

  /**
   * Claims ahead until the queue, with the claims on their way, is at its
   * bound. Called when no slot is free. With a backlog (more events waiting
   * than the queue has room for), it waits until half the queue has been
   * taken and then claims that half at once: the store's batcher makes that
   * one statement or transaction for many nodes, where topping up after every
   * node a slot takes claimed a few at a time (the nodes taken during one
   * claim's round trip), each claim's fixed cost spread over those few. Events
   * that come one by one, fewer than the room, are claimed as they come.
   */
  fill(session: Session): void {
    if (this.bound === 0 || Date.now() < this.pausedUntil) return;
    const room = this.bound - this.queue.length - this.inFlight;
    if (room < this.bound / 2 && this.host.pendingEvents() > room) return;
    while (this.queue.length + this.inFlight < this.bound) {
      const event = this.host.nextEvent();
      if (!event) return;
      this.claimOne(event, session);
    }
  }

  /**
   * Rule 21: what a finish may hand this process: a place for each free slot
   * and, beyond those, up to twice the claim-ahead bound of queued nodes (so
   * a run's next nodes come with its finishes rather than by claims of
   * other runs' READY nodes), at most PER_FINISH. The places of offers still
   * out (finishes on their way) count as queued until their finish is back
   * (offerDone), so concurrent finishes share that room: offers out and the
   * queue stay within 2 × bound plus the slot count, and with what fill()
   * claims (up to the bound, offers not counted, so independent nodes are
   * still claimed ahead while finishes are out) the queue holds at most
   * 3 × bound plus the slot count. Undefined when there is no room.
   */
  offer(session: Session): HandOff | undefined {
    if (!this.host.claiming()) return undefined;
    const held = this.queue.length + this.inFlight + this.offered;
    const room = Math.min(PER_FINISH, this.host.freeSlots() + 2 * this.bound - held);
    if (room <= 0) return undefined;
    const slots = this.host.slots;
    const agentIds = Array.from({ length: room }, () => slots[this.turn++ % slots.length]!.agentId);
    this.offered += room;
    return { leaseId: session.lease.id, agentIds, runtimes: this.host.runtimes };
  }

  /** The finish that carried `offer` is back (what it handed off, if anything, is queued): its places are free. */
  offerDone(offer: HandOff): void {
    this.offered -= offer.agentIds.length;
  }

  /**
   * A finish came back with these claims handed off: they join the queue,
   * or go back at once when the pool is stopping; claims under a lease
   * since lost were orphaned with it.
   */
  handedOff(session: Session, nodes: ClaimedNode[]): void {
    if (nodes.length === 0 || this.host.session() !== session) return;
    const at = performance.now();
    const queued = nodes.map((claimed) => ({
      session,
      event: {
        type: 'NODE_READY' as const,
        runId: claimed.runId,
        node: claimed.node.spec.name,
        runtime: claimed.node.spec.runtime,
      },
      claimed,
      claim: { runId: claimed.runId, node: claimed.node.spec.name, claimId: claimed.claimId },
      at,
    }));
    this.host.counts.handedOff += nodes.length;
    if (!this.host.claiming()) {
      // Stopping: given back, and stop() waits for that before it revokes the lease (releaseAll).
      const returning = this.giveBack(queued);
      this.returning.add(returning);
      void returning.finally(() => this.returning.delete(returning));
      return;
    }
    this.queue.push(...queued);
    this.host.changed();
  }

  /** The queued claims of this session (the heartbeat asks whether they still hold). */
  queued(session: Session): Queued[] {
    return this.queue.filter((q) => q.session === session);
  }

  /** A queued claim no longer holds (its run was cancelled, say): it is not run. */
  drop(q: Queued): void {
    this.queue = this.queue.filter((x) => x !== q);
  }

  /** The session's lease is gone: its queued claims are orphaned already. */
  lost(session: Session): void {
    this.queue = this.queue.filter((q) => q.session !== session);
  }

  /**
   * On stop: waits for the claims on their way, then gives the whole queue
   * back (rule 20), and waits for what finishes still on their way hand off
   * meanwhile to be given back too (stop() calls this again once its work
   * is done, before the lease goes).
   */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.claiming]);
    const queue = this.queue;
    this.queue = [];
    await this.giveBack(queue);
    while (this.returning.size > 0) await Promise.allSettled([...this.returning]);
  }

  private async giveBack(all: Queued[]): Promise<void> {
    // An orphan's recovery claim is not work that never started: the lapsed attempt is recorded (rule 3), as the
    // slot would have, rather than released, which would drop it with its streamed output and its ERROR.
    const queue: Queued[] = [];
    for (const q of all) {
      if (!q.claimed.orphan) {
        queue.push(q);
        continue;
      }
      await this.host.repository
        .finish({
          ...q.claim,
          conclusion: 'ERROR',
          output: new TextEncoder().encode(
            orphanRecoveredMessage(q.claimed, q.claimed.node.claim?.agentId ?? ''),
          ),
        })
        .then(
          () => this.host.counts.orphansRecovered++,
          (e: unknown) =>
            this.host.logger.warn(
              'could not record a queued orphan; it is recovered again when the lease ends',
              {
                run: q.claim.runId,
                node: q.claim.node,
                error: errorMessage(e),
              },
            ),
        );
    }
    if (queue.length === 0) return;
    try {
      const released = await this.host.repository.release(queue.map((q) => q.claim));
      const n = released.filter(Boolean).length;
      this.host.counts.released += n;
      this.host.logger.debug('claimed-ahead nodes given back', { released: n, queued: queue.length });
    } catch (e) {
      // They are recovered when the lease ends (rule 3), as ERROR attempts.
      this.host.logger.warn(
        'could not give back claimed-ahead nodes; they are recovered when the lease ends',
        {
          queued: queue.length,
          error: errorMessage(e),
        },
      );
    }
  }

  private claimOne(event: NodeEvent, session: Session): void {
    this.inFlight++;
    const slots = this.host.slots;
    const agentId = slots[this.turn++ % slots.length]!.agentId;
    const claiming = (async () => {
      try {
        const claimed = await this.host.repository.claim({
          runId: event.runId,
          node: event.node,
          leaseId: session.lease.id,
          agentId,
        });
        // A claim made under a lease that is gone since is orphaned with it: nothing to keep.
        if (!claimed || this.host.session() !== session) return;
        this.host.counts.claimedAhead++;
        this.queue.push({
          session,
          event,
          claimed,
          claim: { runId: claimed.runId, node: claimed.node.spec.name, claimId: claimed.claimId },
          at: performance.now(),
        });
      } catch (e) {
        if (e instanceof LeaseExpiredError) this.host.leaseLost(session, e);
        else if (!(e instanceof NotFoundError)) {
          this.pausedUntil = Date.now() + PAUSE_MS;
          this.host.logger.debug('claim ahead failed; slots claim for themselves a while', {
            error: errorMessage(e),
          });
          this.host.putBack(event);
        }
      } finally {
        this.inFlight--;
        this.host.changed();
      }
    })();
    this.claiming.add(claiming);
    void claiming.finally(() => this.claiming.delete(claiming));
  }
}
