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

/** A gap this much longer than the lease timer's interval means this process was stalled. */
const STALL_MS = 500;

/**
 * The memory backend's leases and agents (rule 3): a lease lives while kept
 * alive; when it lapses or is revoked its agents go and `orphan` is called for
 * each claim it held. The repository owns the nodes; this owns who holds them.
 *
 * The store's clock is this process's, and so are the heartbeats of the
 * agents it embeds: when the whole process stalls (starved of CPU, a long
 * garbage collection, a debugger, SIGSTOP) no holder could heartbeat, as if
 * the store had been down. Such a stall does not count against any lease
 * (`ticked`), like etcd, which restarts its leases' TTLs when it elects a new
 * leader: only time the store was there to hear a heartbeat lapses a lease.
 */
export class MemoryLeases {
  private readonly leases = new Map<string, LeaseRecord>();
  private readonly agents = new Map<string, { info: AgentInfo; leaseId: string }>();
  /** When the lease timer last ran, and its interval; undefined while no timer runs. */
  private tick?: { at: number; intervalMs: number };

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

  /**
   * The lease timer ran (every `intervalMs`). Called first by every lease
   * check too: a gap past the interval (and STALL_MS) is a stall of this
   * process, and every lease's expiry moves on by it.
   */
  ticked(intervalMs = this.tick?.intervalMs): void {
    if (intervalMs === undefined) return;
    // Real elapsed time, not the store's clock: a test moving that clock is not a stall.
    const now = performance.now();
    const stalled = this.tick ? now - this.tick.at - this.tick.intervalMs : 0;
    if (stalled > STALL_MS) for (const lease of this.leases.values()) lease.expiresAt += stalled;
    this.tick = { at: now, intervalMs };
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
    this.ticked();
    const now = this.clock.now();
    for (const lease of this.leases.values()) if (lease.expiresAt <= now) this.end(lease);
  }

  /** The lease's id when it is live; LeaseExpiredError otherwise. */
  check(leaseId: string): string {
    return this.live(leaseId).id;
  }

  /** Whether the lease holds now (a lapsed one ends here, as any check ends it). */
  isLive(leaseId: string): boolean {
    try {
      this.live(leaseId);
      return true;
    } catch {
      return false;
    }
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
    this.ticked();
    const lease = this.leases.get(leaseId);
    if (lease && lease.expiresAt <= this.clock.now()) this.end(lease);
    if (!lease || !this.leases.has(leaseId)) throw new LeaseExpiredError(leaseId);
    return lease;
  }
}
