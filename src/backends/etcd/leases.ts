import { hostname as osHostname } from 'node:os';
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { type AgentInfo, type Clock, checkLeaseTtl, rfc3339 } from '../../model/index.js';
import { LeaseExpiredError, UnavailableError } from '../../protocol/errors.js';
import { type AgentRegistration, DEFAULT_LEASE_TTL_MS, type Lease } from '../../protocol/repository.js';
import type { Keys } from './keys.js';
import { decodeJson, encodeJson } from './records.js';
import { del, getPrefix, isLeaseNotFound, put, type Store } from './store.js';

/**
 * Leases are etcd's own: etcd's clock judges expiry, and when one lapses etcd
 * deletes every key bound to it (the holder's claim keys and agent keys) in
 * one revision, which is what orphans its claims. One lease per agent
 * process, however many claims it holds: a grant or revoke is a consensus
 * write, a claim only attaches a key to the existing lease.
 */
export class Leases {
  private stream?: Promise<IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>>;
  private readonly waiters = new Map<
    string,
    { resolve: (ttl: number) => void; reject: (e: unknown) => void }[]
  >();

  constructor(
    private readonly store: Store,
    private readonly keys: Keys,
    private readonly clock: Clock,
    private readonly defaultTtlMs: number,
  ) {}

  async grant(ttlMs = this.defaultTtlMs ?? DEFAULT_LEASE_TTL_MS): Promise<Lease> {
    checkLeaseTtl(ttlMs);
    const ttl = Math.max(1, Math.ceil(ttlMs / 1000));
    const res = await this.store.retrying('grant lease', () =>
      this.store.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }),
    );
    // etcd may raise a TTL to its minimum; the granted one is what waits must use.
    return { id: String(res.ID), ttlMs: Number(res.TTL) * 1000 };
  }

  async keepAlive(leaseId: string): Promise<void> {
    if (!/^[1-9][0-9]*$/.test(leaseId)) throw new LeaseExpiredError(leaseId);
    const ttl = await this.store.retrying('keep lease alive', () => this.sendKeepAlive(leaseId));
    if (ttl <= 0) throw new LeaseExpiredError(leaseId);
  }

  async revoke(leaseId: string): Promise<void> {
    if (!/^[1-9][0-9]*$/.test(leaseId)) return;
    await this.store.retrying('revoke lease', async () => {
      try {
        await this.store.client.leaseClient.leaseRevoke({ ID: leaseId });
      } catch (e) {
        if (!isLeaseNotFound(e)) throw e;
      }
    });
  }

  /** One keepalive stream for the process; replies come back per lease id in order. */
  private async sendKeepAlive(leaseId: string): Promise<number> {
    const stream = await this.openStream();
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.resetStream(new UnavailableError('etcd lease keepalive timed out'));
      }, 5_000);
      const list = this.waiters.get(leaseId) ?? [];
      list.push({
        resolve: (ttl) => {
          clearTimeout(timer);
          resolve(ttl);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.waiters.set(leaseId, list);
      stream.write({ ID: leaseId });
    });
  }

  private openStream() {
    this.stream ??= this.store.client.leaseClient.leaseKeepAlive().then(
      (s) => {
        s.on('data', (res: ILeaseKeepAliveResponse) => {
          const id = String(res.ID);
          const list = this.waiters.get(id);
          const w = list?.shift();
          if (list && list.length === 0) this.waiters.delete(id);
          w?.resolve(Number(res.TTL));
        });
        s.on('error', (e: Error) =>
          this.resetStream(new UnavailableError(`etcd keepalive stream: ${e.message}`)),
        );
        s.on('end', () => this.resetStream(new UnavailableError('etcd keepalive stream ended')));
        return s;
      },
      (e: unknown) => {
        this.stream = undefined;
        throw e;
      },
    );
    return this.stream;
  }

  private resetStream(error: unknown): void {
    const s = this.stream;
    this.stream = undefined;
    s?.then((x) => x.end()).catch(() => {});
    const all = [...this.waiters.values()].flat();
    this.waiters.clear();
    for (const w of all) w.reject(error);
  }

  close(): void {
    this.resetStream(new UnavailableError('etcd repository is closed'));
  }

  // ---- agents: keys bound to the lease, so a lapsed process vanishes from listAgents by itself

  async register(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    if (!/^[1-9][0-9]*$/.test(leaseId)) throw new LeaseExpiredError(leaseId);
    const info: AgentInfo = {
      id: agent.id,
      runtimes: agent.runtimes.map((r) => ({ name: r.name })),
      startedAt: rfc3339(this.clock.now()),
      hostname: agent.hostname ?? osHostname(),
    };
    await this.store.retrying('register agent', async () => {
      try {
        await this.store.txn({ success: [put(this.keys.agent(agent.id), encodeJson(info), leaseId)] });
      } catch (e) {
        if (isLeaseNotFound(e)) throw new LeaseExpiredError(leaseId);
        throw e;
      }
    });
    return info;
  }

  async deregister(agentId: string): Promise<void> {
    await this.store.retrying('deregister agent', () =>
      this.store.txn({ success: [del(this.keys.agent(agentId))] }),
    );
  }

  async list(): Promise<AgentInfo[]> {
    const res = await this.store.retrying('list agents', () =>
      this.store.txn({ success: [getPrefix(this.keys.agents())] }),
    );
    const kvs = res.responses[0]!.response_range.kvs;
    return kvs.map((kv) => decodeJson<AgentInfo>(kv.value)).sort((a, b) => a.id.localeCompare(b.id));
  }
}
