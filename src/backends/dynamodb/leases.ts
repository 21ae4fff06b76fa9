import { randomUUID } from 'node:crypto';
import {
  type AgentInfo,
  checkAgentRegistration,
  checkId,
  checkLeaseTtl,
  rfc3339,
} from '../../model/index.js';
import { type AgentRegistration, type Lease, LeaseExpiredError } from '../../protocol/index.js';
import { type ClaimEntry, entriesOf } from './claim-records.js';
import { type DynamoContext, emitNode, emitReady } from './context.js';
import { N, S } from './db.js';
import {
  AGENTS_PK,
  agentKey,
  decodeNode,
  encodeNode,
  keyItem,
  LEASES_PK,
  leaseClaimsPk,
  leaseKey,
  next,
  nodeKey,
} from './items.js';

/**
 * Rule 3 without a server clock. DynamoDB's conditions cannot compare against
 * the server's time, so leases follow AWS's DynamoDB lock client: a lease item
 * holds a record version (`rv`) that every heartbeat replaces with a new
 * random one. An observer (each process's sweeper) remembers the version it
 * saw and when, on its own monotonic clock; a lease lapses only once the same
 * version was seen for a whole TTL, and the lapse is a write conditioned on
 * that version, so a heartbeat that landed meanwhile wins. No one's wall
 * clock decides expiry. Claims are recorded under their lease (`lc#<lease>`)
 * so a lapse orphans exactly them.
 */
export class Leases {
  /** Lease id → the version seen and since when (performance.now()). */
  private readonly seen = new Map<string, { rv: string; since: number }>();

  constructor(
    private readonly ctx: DynamoContext,
    private readonly defaultTtlMs: number,
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  async grant(ttlMs = this.defaultTtlMs): Promise<Lease> {
    checkLeaseTtl(ttlMs);
    const id = this.ctx.ids.next(this.ctx.clock.now());
    await this.ctx.db.update(leaseKey(id), {
      UpdateExpression: 'SET ttl_ms = :t, rv = :rv',
      ExpressionAttributeValues: { ':t': N(ttlMs), ':rv': S(randomUUID()) },
    });
    return { id, ttlMs };
  }

  async keepAlive(id: string): Promise<void> {
    checkId('lease id', id);
    const ok = await this.ctx.db.update(leaseKey(id), {
      UpdateExpression: 'SET rv = :rv',
      ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(lapsed)',
      ExpressionAttributeValues: { ':rv': S(randomUUID()) },
    });
    if (!ok) throw new LeaseExpiredError(id);
  }

  async revoke(id: string): Promise<void> {
    checkId('lease id', id);
    await this.ctx.db.update(leaseKey(id), {
      UpdateExpression: 'SET lapsed = :t',
      ConditionExpression: 'attribute_exists(pk)',
      ExpressionAttributeValues: { ':t': { BOOL: true } },
    });
    await this.release(id);
  }

  async register(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    checkId('lease id', leaseId);
    checkAgentRegistration(agent);
    const info: AgentInfo = {
      id: agent.id,
      runtimes: agent.runtimes.map((r) => ({ name: r.name })),
      startedAt: rfc3339(this.ctx.clock.now()),
      hostname: agent.hostname ?? '',
    };
    const tx = this.ctx.db.tx();
    tx.check(leaseKey(leaseId), 'attribute_exists(pk) AND attribute_not_exists(lapsed)');
    tx.put({ ...keyItem(agentKey(agent.id)), lease: S(leaseId), d: S(JSON.stringify(info)) }, 'any');
    if (!(await this.ctx.db.commit(tx))) throw new LeaseExpiredError(leaseId);
    return info;
  }

  async deregister(agentId: string): Promise<void> {
    const tx = this.ctx.db.tx();
    tx.del(agentKey(agentId));
    await this.ctx.db.commit(tx);
  }

  /** Agents whose lease holds. */
  async list(): Promise<AgentInfo[]> {
    const [agents, leases] = await Promise.all([
      this.ctx.db.partition(AGENTS_PK),
      this.ctx.db.partition(LEASES_PK),
    ]);
    const live = new Set(leases.filter((l) => !l.lapsed).map((l) => l.sk!.S!));
    return agents.filter((a) => live.has(a.lease!.S!)).map((a) => JSON.parse(a.d!.S!) as AgentInfo);
  }

  /**
   * The observer: reads every lease, lapses those whose version stood still
   * for a whole TTL on this process's clock, and finishes releasing lapsed
   * ones (their claims orphaned, agents gone, lease deleted).
   */
  async observe(): Promise<string[]> {
    const leases = await this.ctx.db.partition(LEASES_PK);
    const now = this.monotonic();
    const present = new Set<string>();
    const live: string[] = [];
    for (const l of leases) {
      const id = l.sk!.S!;
      present.add(id);
      if (l.lapsed) {
        await this.release(id);
        continue;
      }
      const rv = l.rv!.S!;
      const seen = this.seen.get(id);
      if (!seen || seen.rv !== rv) {
        this.seen.set(id, { rv, since: now });
        live.push(id);
        continue;
      }
      if (now - seen.since < Number(l.ttl_ms!.N)) {
        live.push(id);
        continue;
      }
      const lapsed = await this.ctx.db.update(leaseKey(id), {
        UpdateExpression: 'SET lapsed = :t',
        ConditionExpression: 'rv = :rv',
        ExpressionAttributeValues: { ':t': { BOOL: true }, ':rv': S(rv) },
      });
      if (lapsed) await this.release(id);
    }
    for (const id of this.seen.keys()) if (!present.has(id)) this.seen.delete(id);
    return live;
  }

  /**
   * A lapsed or revoked lease: orphan the claims its records name that their
   * nodes still hold, delete the records, remove its agents, then the lease
   * itself. Each step is idempotent: a process that dies midway leaves the
   * lease marked lapsed, and the next observer releases it again.
   */
  private async release(id: string): Promise<void> {
    for (const record of await this.ctx.db.partition(leaseClaimsPk(id))) {
      for (const entry of entriesOf(record)) await this.orphan(entry);
      await this.ctx.db.writeAll([], [{ pk: record.pk!.S!, sk: record.sk!.S! }]);
    }
    const agents = (await this.ctx.db.partition(AGENTS_PK)).filter((a) => a.lease?.S === id);
    await this.ctx.db.writeAll(
      [],
      agents.map((a) => ({ pk: AGENTS_PK, sk: a.sk!.S! })),
    );
    const tx = this.ctx.db.tx();
    tx.del(leaseKey(id));
    await this.ctx.db.commit(tx);
    this.seen.delete(id);
  }

  /** Marks the claim orphaned when the node still holds it (rule 3); subscribers see it in the ready index. */
  private async orphan({ claimId, runId, node: name }: ClaimEntry): Promise<void> {
    for (;;) {
      const item = await this.ctx.db.get(nodeKey(runId, name));
      const node = item && decodeNode(item);
      const claim = node?.d.claim;
      // A stale entry (the claim ended, or was orphaned already): nothing to do.
      if (!node || !claim || node.d.status !== 'RUNNING' || claim.id !== claimId || claim.orphaned) return;
      const orphaned = next(node, { ...node.d, claim: { ...claim, orphaned: true } });
      const tx = this.ctx.db.tx();
      tx.putNode(encodeNode(orphaned), node.v);
      if (await this.ctx.db.commit(tx)) {
        emitNode(this.ctx, orphaned, 'RUNNING');
        emitReady(this.ctx, orphaned);
        this.ctx.bus.emit('run', runId);
        return;
      }
    }
  }
}
