import { hostname as osHostname } from 'node:os';
import { type AgentInfo, checkLeaseTtl, rfc3339 } from '../../model/index.js';
import {
  type AgentRegistration,
  DEFAULT_LEASE_TTL_MS,
  type Lease,
  LeaseExpiredError,
} from '../../protocol/index.js';
import {
  DEREGISTER_AGENT,
  GRANT_LEASE,
  KEEP_LEASE_ALIVE,
  LEASE_HOLDS_CLAIMS,
  LIST_AGENTS,
  REAP_LEASES,
  REGISTER_AGENT,
  REVOKE_LEASE,
} from './sql.js';
import { orphanLapsedClaims, type TransitionContext } from './transitions.js';

/**
 * Leases and agents. A lease is a row whose expires_at the database's own
 * clock judges; keepAlive pushes it forward; once past, it is dead for good
 * (keepAlive refuses it) and the reaper orphans its claims.
 */

export async function grantLease(ctx: TransitionContext, ttlMs = DEFAULT_LEASE_TTL_MS): Promise<Lease> {
  checkLeaseTtl(ttlMs);
  const ttl = Math.ceil(ttlMs);
  const id = ctx.ids.next(ctx.clock.now());
  await ctx.db.retrying('grant lease', () => ctx.db.query('grant lease', GRANT_LEASE, [id, ttl]));
  return { id, ttlMs: ttl };
}

export async function keepAlive(ctx: TransitionContext, leaseId: string): Promise<void> {
  const r = await ctx.db.retrying('keep lease alive', () =>
    ctx.db.query('keep lease alive', KEEP_LEASE_ALIVE, [leaseId]),
  );
  if (r.rowCount === 0) throw new LeaseExpiredError(leaseId);
}

/** Ends the lease now: its agents go, its claims are orphaned before this returns. */
export async function revokeLease(ctx: TransitionContext, leaseId: string): Promise<void> {
  await ctx.db.retrying('revoke lease', () => ctx.db.query('revoke lease', REVOKE_LEASE, [leaseId]));
  // The orphaning pass skips rows others hold; repeat briefly until none of this lease's claims is left.
  for (let i = 0; i < 100; i++) {
    await ctx.db.retrying('revoke lease', () => orphanLapsedClaims(ctx));
    const left = await ctx.db.query('revoke lease', LEASE_HOLDS_CLAIMS, [leaseId]);
    if (left.rowCount === 0) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface AgentRow {
  id: string;
  runtimes: { name: string }[];
  hostname: string;
  started_at: string;
}

const toAgent = (r: AgentRow): AgentInfo => ({
  id: r.id,
  runtimes: r.runtimes,
  hostname: r.hostname,
  startedAt: rfc3339(Number(r.started_at)),
});

export async function registerAgent(
  ctx: TransitionContext,
  leaseId: string,
  agent: AgentRegistration,
): Promise<AgentInfo> {
  const now = ctx.clock.now();
  const runtimes = agent.runtimes.map((r) => ({ name: r.name }));
  const { rows } = await ctx.db.retrying('register agent', () =>
    ctx.db.query<AgentRow>('register agent', REGISTER_AGENT, [
      agent.id,
      leaseId,
      JSON.stringify(runtimes),
      agent.hostname ?? osHostname(),
      now,
    ]),
  );
  if (!rows[0]) throw new LeaseExpiredError(leaseId);
  return toAgent(rows[0]);
}

export async function deregisterAgent(ctx: TransitionContext, agentId: string): Promise<void> {
  await ctx.db.retrying('deregister agent', () =>
    ctx.db.query('deregister agent', DEREGISTER_AGENT, [agentId]),
  );
}

/** Live agents only: the join drops those whose lease lapsed even before the reaper runs. */
export async function listAgents(ctx: TransitionContext): Promise<AgentInfo[]> {
  const { rows } = await ctx.db.retrying('list agents', () =>
    ctx.db.query<AgentRow>('list agents', LIST_AGENTS),
  );
  return rows.map(toAgent);
}

/**
 * One reaper pass: deletes lapsed leases and their agents, then orphans
 * every claim without a live lease. Safe to run in any number of processes
 * at once.
 */
export async function reap(ctx: TransitionContext): Promise<{ agents: number; orphaned: number }> {
  const gone = await ctx.db.query('reap leases', REAP_LEASES);
  const orphaned = await orphanLapsedClaims(ctx);
  return { agents: gone.rowCount ?? 0, orphaned };
}
