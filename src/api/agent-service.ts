import { randomBytes } from 'node:crypto';
import { create } from '@bufbuild/protobuf';
import { ConnectError, type HandlerContext, type ServiceImpl } from '@connectrpc/connect';
import * as ag from '../gen/adagio/rpc/agent/agent_pb.js';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import type { Logger } from '../log.js';
import { orphanRecoveredMessage } from '../model/rules.js';
import type { Metadata } from '../model/types.js';
import { agentToProto, metadataFromProto, nodeFromProto, nodeToProto } from '../model/wire.js';
import {
  ClaimConflictError,
  InvalidArgumentError,
  isAdagioError,
  LeaseExpiredError,
  NotFoundError,
  UnavailableError,
} from '../protocol/errors.js';
import type { ClaimedNode, ClaimRef, FinishConclusion, Repository } from '../protocol/repository.js';
import { toConnectError } from './errors.js';
import { ReadyFeeds } from './ready-feeds.js';

/**
 * The agent API (proto adagio.rpc.agent.AgentService): the agent-facing part
 * of the Repository protocol relayed over the network, plus ClaimNext, a
 * long-poll that lets a tiny client do work with four calls. Fencing, leases
 * and retries stay in the backend; this layer validates and translates.
 */

/** Default and cap of ClaimNext's wait: below common proxy idle timeouts (60 s). */
export const CLAIM_NEXT_DEFAULT_WAIT_MS = 30_000;
export const CLAIM_NEXT_MAX_WAIT_MS = 60_000;

/**
 * Response header naming the typed error behind a failure, so a remote client
 * can rebuild it: FAILED_PRECONDITION is both a lapsed lease (re-register) and
 * a refused finish (drop the result), and they need different handling.
 */
export const ERROR_TYPE_HEADER = 'adagio-error';
export type RemoteErrorType = 'lease_expired' | 'claim_conflict' | `not_found.${NotFoundError['kind']}`;

export function errorType(e: unknown): RemoteErrorType | undefined {
  if (e instanceof LeaseExpiredError) return 'lease_expired';
  if (e instanceof ClaimConflictError) return 'claim_conflict';
  if (e instanceof NotFoundError) return `not_found.${e.kind}`;
  return undefined;
}

export function agentService(
  repo: Repository,
  logger: Logger,
  /** Shared by this service's claim-next calls; the server closes it. */
  feeds: ReadyFeeds = new ReadyFeeds(repo, logger),
): ServiceImpl<typeof ag.AgentService> {
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      throw agentError(e, logger);
    }
  };
  return {
    register: (req) =>
      guard(async () => {
        if (req.runtimes.length === 0)
          throw new InvalidArgumentError('runtimes must name at least one runtime');
        const runtimes = req.runtimes.map((r) => ({ name: required(r.name, 'runtimes[].name') }));
        const agentId = req.agentId || `agent-${randomBytes(6).toString('hex')}`;
        const lease = req.leaseId
          ? { id: req.leaseId, ttlMs: 0 }
          : await repo.grantLease(req.ttlMs > 0n ? Number(req.ttlMs) : undefined);
        try {
          const agent = await repo.registerAgent(lease.id, {
            id: agentId,
            runtimes,
            ...(req.hostname ? { hostname: req.hostname } : {}),
          });
          logger.debug('remote agent registered', { agent: agentId, lease: lease.id });
          return create(ag.RegisterResponseSchema, {
            agent: agentToProto(agent),
            lease: { id: lease.id, ttlMs: BigInt(lease.ttlMs) },
          });
        } catch (e) {
          // A lease granted for this call alone must not outlive it.
          if (!req.leaseId) await repo.revokeLease(lease.id).catch(() => undefined);
          throw e;
        }
      }),
    deregister: (req) =>
      guard(async () => {
        await repo.deregisterAgent(required(req.agentId, 'agent_id'));
        if (req.leaseId) await repo.revokeLease(req.leaseId);
        return create(ag.DeregisterResponseSchema);
      }),
    heartbeat: (req) =>
      guard(async () => {
        await repo.keepAlive(required(req.leaseId, 'lease_id'));
        return create(ag.HeartbeatResponseSchema);
      }),
    grantLease: (req) =>
      guard(async () => {
        const lease = await repo.grantLease(req.ttlMs > 0n ? Number(req.ttlMs) : undefined);
        return create(ag.GrantLeaseResponseSchema, { lease: { id: lease.id, ttlMs: BigInt(lease.ttlMs) } });
      }),
    revokeLease: (req) =>
      guard(async () => {
        await repo.revokeLease(required(req.leaseId, 'lease_id'));
        return create(ag.RevokeLeaseResponseSchema);
      }),
    claimNext: (req, ctx) =>
      guard(async () => {
        const claimed = await claimNext(repo, feeds, req, ctx.signal, logger);
        return create(ag.ClaimNextResponseSchema, claimed ? { claimed: claimedToProto(claimed) } : {});
      }),
    async *subscribe(req, ctx) {
      const runtimes = requireRuntimes(req.runtimes);
      try {
        for await (const ev of repo.subscribe({ runtimes, signal: ctx.signal }))
          yield create(ag.SubscribeResponseSchema, {
            event: {
              type: ev.type === 'NODE_READY' ? pb.Event_Type.NODE_READY : pb.Event_Type.NODE_ORPHANED,
              runId: ev.runId,
              nodeName: ev.node,
              runtime: ev.runtime,
            },
          });
      } catch (e) {
        if (ctx.signal.aborted) return;
        throw agentError(e, logger);
      }
    },
    claim: (req, ctx) =>
      guard(async () => {
        const agentId = required(req.agentId, 'agent_id');
        const claimed = await repo.claim({
          runId: required(req.runId, 'run_id'),
          node: required(req.nodeName, 'node_name'),
          leaseId: required(req.leaseId, 'lease_id'),
          agentId,
          metadata: metadataFromProto(req.metadata),
        });
        if (claimed && ctx.signal.aborted) {
          // The caller hung up or timed out while the store claimed: it will never hear of this claim, which its
          // live lease would otherwise hold RUNNING for as long as the agent lives. Settled as claim-next does.
          await settleUnreceived(repo, claimed, agentId, logger);
          return create(ag.ClaimResponseSchema);
        }
        return create(ag.ClaimResponseSchema, claimed ? { claimed: claimedToProto(claimed) } : {});
      }),
    finish: (req) =>
      guard(async () => {
        await repo.finish({
          runId: required(req.runId, 'run_id'),
          node: required(req.nodeName, 'node_name'),
          claimId: required(req.claimId, 'claim_id'),
          conclusion: conclusionFromProto(req.conclusion),
          output: req.output,
          metadata: metadataFromProto(req.metadata),
          ...(req.startedAtMs !== 0n ? { startedAt: Number(req.startedAtMs) } : {}),
        });
        return create(ag.FinishResponseSchema);
      }),
    appendOutput: (req) =>
      guard(async () => {
        await repo.appendOutput({
          runId: required(req.runId, 'run_id'),
          node: required(req.nodeName, 'node_name'),
          claimId: required(req.claimId, 'claim_id'),
          seq: Number(req.seq),
          chunk: req.chunk,
        });
        return create(ag.AppendOutputResponseSchema);
      }),
    claimsHeld: (req) =>
      guard(async () =>
        create(ag.ClaimsHeldResponseSchema, { held: await repo.claimsHeld(claimRefs(req.claims)) }),
      ),
    release: (req) =>
      guard(async () =>
        create(ag.ReleaseResponseSchema, { released: await repo.release(claimRefs(req.claims)) }),
      ),
  };
}

/** Claims one ClaimsHeld or Release call may name: far more than an agent process holds at once. */
export const MAX_CLAIMS_HELD = 1_000;

function claimRefs(claims: ag.ClaimRef[]): ClaimRef[] {
  if (claims.length > MAX_CLAIMS_HELD)
    throw new InvalidArgumentError(`claims: at most ${MAX_CLAIMS_HELD} per call, got ${claims.length}`);
  return claims.map((c) => ({
    runId: required(c.runId, 'claims[].run_id'),
    node: required(c.nodeName, 'claims[].node_name'),
    claimId: required(c.claimId, 'claims[].claim_id'),
  }));
}

/**
 * ClaimNext: take READY nodes from the process's shared feed (ready-feeds.ts;
 * a new subscription replays every READY node, rule 8), try to claim each,
 * return the first win. Orphans met on the way are
 * recovered here with an ERROR attempt (rule 3) so clients never see them.
 */
async function claimNext(
  repo: Repository,
  feeds: ReadyFeeds,
  req: ag.ClaimNextRequest,
  callerSignal: AbortSignal,
  logger: Logger,
): Promise<ClaimedNode | undefined> {
  const leaseId = required(req.leaseId, 'lease_id');
  const agentId = required(req.agentId, 'agent_id');
  const runtimes = requireRuntimes(req.runtimes);
  if (req.waitMs < 0n) throw new InvalidArgumentError('wait_ms must not be negative');
  const waitMs = Math.min(Number(req.waitMs) || CLAIM_NEXT_DEFAULT_WAIT_MS, CLAIM_NEXT_MAX_WAIT_MS);
  const metadata = metadataFromProto(req.metadata);
  // Check the lease first: a dead lease must answer 409 now, not after an idle wait.
  await repo.keepAlive(leaseId);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  callerSignal.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(onAbort, waitMs);
  try {
    for (;;) {
      const ev = await feeds.next(runtimes, stop.signal);
      if (!ev) return undefined;
      if (stop.signal.aborted) {
        // The caller is gone or its wait is over: claim nothing more for it, and leave the event to others.
        feeds.giveBack(runtimes, ev);
        return undefined;
      }
      let claimed: ClaimedNode | undefined;
      try {
        claimed = await repo.claim({ runId: ev.runId, node: ev.node, leaseId, agentId, metadata });
      } catch (e) {
        // The run was deleted or the node raced away: try the next event.
        if (e instanceof NotFoundError && e.kind !== 'lease') continue;
        if (e instanceof ClaimConflictError) continue;
        // Not tried: another caller may have better luck with it.
        feeds.giveBack(runtimes, ev);
        throw e;
      }
      if (!claimed) continue;
      if (claimed.orphan) {
        await finishQuietly(repo, claimed, orphanRecoveredMessage(claimed, agentId), logger);
        continue;
      }
      if (callerSignal.aborted) {
        await settleUnreceived(repo, claimed, agentId, logger);
        return undefined;
      }
      return claimed;
    }
  } finally {
    clearTimeout(timer);
    callerSignal.removeEventListener('abort', onAbort);
    stop.abort();
  }
}

/**
 * A claim made for a caller that is gone: nobody will run it. A plain claim is
 * given back (rule 20): READY again with no attempt, rather than left RUNNING
 * under the caller's live lease, or recorded as an ERROR that spends a retry.
 * An orphan's recovery claim records the lapsed attempt as its ERROR (rule 3):
 * given back, it would drop that attempt.
 */
async function settleUnreceived(
  repo: Repository,
  c: ClaimedNode,
  agentId: string,
  logger: Logger,
): Promise<void> {
  if (c.orphan) await finishQuietly(repo, c, orphanRecoveredMessage(c, agentId), logger);
  else await releaseQuietly(repo, c, logger);
}

/** Gives back a claim whose work never started, repeating through store outages a while (rule 20). */
async function releaseQuietly(repo: Repository, c: ClaimedNode, logger: Logger): Promise<void> {
  const ref = { runId: c.runId, node: c.node.spec.name, claimId: c.claimId };
  let delay = 100;
  for (let attempt = 1; ; attempt++) {
    try {
      await repo.release([ref]);
      return;
    } catch (e) {
      if (!(e instanceof UnavailableError) || attempt === RELEASE_ATTEMPTS) {
        // Held until the caller's lease lapses, then recovered as an orphan (rule 3).
        logger.warn('could not give back a claim its caller never received', {
          run: c.runId,
          node: c.node.spec.name,
          error: String(e),
        });
        return;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay *= 2;
    }
  }
}

/** Tries of releaseQuietly through an unavailable store: 100 ms doubling, about 3 s in all. */
const RELEASE_ATTEMPTS = 6;

async function finishQuietly(
  repo: Repository,
  c: ClaimedNode,
  message: string,
  logger: Logger,
): Promise<void> {
  try {
    await repo.finish({
      runId: c.runId,
      node: c.node.spec.name,
      claimId: c.claimId,
      conclusion: 'ERROR',
      output: new TextEncoder().encode(message),
    });
  } catch (e) {
    // Refused or unreachable: the claim lapses with the lease and is recovered again.
    logger.warn('could not record an ERROR attempt', {
      run: c.runId,
      node: c.node.spec.name,
      error: String(e),
    });
  }
}

/** A typed error as a ConnectError carrying its type in a header (see ERROR_TYPE_HEADER). */
export function agentError(e: unknown, logger: Logger): ConnectError {
  if (e instanceof ConnectError) return e;
  const ce = toConnectError(e, logger);
  const type = isAdagioError(e) ? errorType(e) : undefined;
  if (type) ce.metadata.set(ERROR_TYPE_HEADER, type);
  return ce;
}

function required(value: string, name: string): string {
  if (!value) throw new InvalidArgumentError(`${name} is required`);
  return value;
}

function requireRuntimes(runtimes: string[]): string[] {
  const names = runtimes.filter((r) => r !== '');
  if (names.length === 0) throw new InvalidArgumentError('runtimes must name at least one runtime');
  return names;
}

const CONCLUSIONS = new Map<pb.Attempt_Conclusion, FinishConclusion>([
  [pb.Attempt_Conclusion.SUCCESS, 'SUCCESS'],
  [pb.Attempt_Conclusion.FAIL, 'FAIL'],
  [pb.Attempt_Conclusion.ERROR, 'ERROR'],
]);

export function conclusionFromProto(c: pb.Attempt_Conclusion): FinishConclusion {
  const out = CONCLUSIONS.get(c);
  if (!out) throw new InvalidArgumentError('conclusion must be SUCCESS, FAIL or ERROR');
  return out;
}

export function conclusionToProto(c: FinishConclusion): pb.Attempt_Conclusion {
  return pb.Attempt_Conclusion[c];
}

/** One conversion for graphs and agent calls alike (it keeps a `__proto__` key for validation to refuse). */
export { metadataFromProto };

export function metadataToProto(m: Metadata | undefined): { [k: string]: pb.MetadataValues } {
  const out: { [k: string]: pb.MetadataValues } = {};
  for (const [k, values] of Object.entries(m ?? {})) out[k] = create(pb.MetadataValuesSchema, { values });
  return out;
}

export function claimedToProto(c: ClaimedNode): ag.ClaimedNode {
  return create(ag.ClaimedNodeSchema, {
    runId: c.runId,
    claimId: c.claimId,
    attempt: c.attempt,
    orphan: c.orphan,
    previousClaimId: c.previousClaimId ?? '',
    previousAgentId: c.previousAgentId ?? '',
    node: nodeToProto(c.node),
  });
}

export function claimedFromProto(c: ag.ClaimedNode): ClaimedNode {
  const out: ClaimedNode = {
    runId: c.runId,
    claimId: c.claimId,
    attempt: c.attempt,
    orphan: c.orphan,
    node: nodeFromProto(c.node ?? create(pb.NodeSchema)),
  };
  if (c.previousClaimId) out.previousClaimId = c.previousClaimId;
  if (c.previousAgentId) out.previousAgentId = c.previousAgentId;
  return out;
}

/** For handlers called outside Connect (the JSON routes): a context with only a signal. */
export function signalContext(signal: AbortSignal): HandlerContext {
  return { signal } as HandlerContext;
}
