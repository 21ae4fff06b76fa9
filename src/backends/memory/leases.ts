import { hostname as osHostname } from 'node:os';
import { type AgentInfo, type Clock, checkLeaseTtl, type IdSource, rfc3339 } from '../../model/index.js';
import { type AgentRegistration, type Lease, LeaseExpiredError } from '../../protocol/index.js';
import type { NodeRecord } from './state.js';

interface LeaseRecord {
  id: string;
  ttlMs: number;
  expiresAt: number;
  claims: Set<NodeRecord>;
  agents: Set<string>;
}

/**
 * The memory backend's leases and agents (rule 3): a lease lives while kept
 * alive; when it lapses or is revoked its agents go and `orphan` is called for
 * each claim it held. The repository owns the nodes; this owns who holds them.
 */
export class MemoryLeases {
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly agents = new Map<string, { info: AgentInfo; leaseId: string }>();

  constructor(
    private readonly clock: Clock,
    private readonly ids: IdSource,
    private readonly orphan: (node: NodeRecord) => void,
  ) {}

  grant(ttlMs: number): Lease {
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

  keepAlive(leaseId: string): void {
    const lease = this.live(leaseId);
    lease.expiresAt = this.clock.now() + lease.ttlMs;
  }

  revoke(leaseId: string): void {
    const lease = this.leases.get(leaseId);
    if (lease) this.end(lease);
  }

  register(leaseId: string, agent: AgentRegistration): AgentInfo {
    const lease = this.live(leaseId);
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

  deregister(agentId: string): void {
    const a = this.agents.get(agentId);
    if (!a) return;
    this.agents.delete(agentId);
    this.leases.get(a.leaseId)?.agents.delete(agentId);
  }

  list(): AgentInfo[] {
    this.expireLapsed();
    return [...this.agents.values()].map((a) => a.info).sort((x, y) => x.id.localeCompare(y.id));
  }

  /** Ends every lease past its expiry. */
  expireLapsed(): void {
    const now = this.clock.now();
    for (const lease of this.leases.values()) if (lease.expiresAt <= now) this.end(lease);
  }

  /** The lease's id when it is live; LeaseExpiredError otherwise. */
  check(leaseId: string): string {
    return this.live(leaseId).id;
  }

  /** Records that the lease holds a claim on `node`. */
  held(leaseId: string, node: NodeRecord): void {
    this.leases.get(leaseId)?.claims.add(node);
  }

  /** The claim on `node` ended (finished, cancelled, or replaced). */
  released(leaseId: string, node: NodeRecord): void {
    this.leases.get(leaseId)?.claims.delete(node);
  }

  private end(lease: LeaseRecord): void {
    this.leases.delete(lease.id);
    for (const agentId of lease.agents) this.agents.delete(agentId);
    for (const node of lease.claims) this.orphan(node);
  }

  private live(leaseId: string): LeaseRecord {
    const lease = this.leases.get(leaseId);
    if (lease && lease.expiresAt <= this.clock.now()) this.end(lease);
    if (!lease || !this.leases.has(leaseId)) throw new LeaseExpiredError(leaseId);
    return lease;
  }
}
