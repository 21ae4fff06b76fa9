/**
 * etcd backend faults, against real etcd processes: a 3-member cluster losing
 * a member mid-load, a single member restarted (kill -9) under an agent pool
 * and under adagiod processes, and a 10,000-node run written in chunks.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { AgentPool } from '../../src/agent/index.js';
import { EtcdRepository } from '../../src/backends/etcd/index.js';
import type { GraphSpec, Run } from '../../src/model/types.js';
import type { Runtime } from '../../src/runtimes/runtime.js';
import { EtcdCluster, uniqueNamespace } from '../support/etcd.js';
import { allComplete as allCompleteVia, deploy, retrying, startRuns as startRunsVia } from './daemons.js';

const noop: Runtime = { name: 'noop', run: async () => ({ conclusion: 'SUCCESS' }) };

function sevenNode(runtime = 'noop'): GraphSpec {
  const node = (name: string) => ({
    name,
    runtime,
    metadata: {},
    retry: { error: { maxAttempts: 3 } },
  });
  return {
    nodes: [...'abcdefg'].map(node),
    edges: ['ac', 'ad', 'bd', 'bf', 'ce', 'de', 'eg', 'fg'].map(([s, d]) => ({
      source: s!,
      destination: d!,
    })),
  };
}

/** Polls until every run completed; fails naming the stragglers. */
async function allComplete(repo: EtcdRepository, ids: string[], ms: number): Promise<Run[]> {
  const deadline = Date.now() + ms;
  const done = new Map<string, Run>();
  while (done.size < ids.length) {
    for (const id of ids) {
      if (done.has(id)) continue;
      try {
        const run = await repo.inspect(id);
        if (run.status === 'COMPLETED') done.set(id, run);
      } catch {
        // the store may be between leaders: ask again
      }
    }
    if (done.size === ids.length) break;
    if (Date.now() > deadline) {
      // Name what is stuck: which nodes, in what state, under which claim.
      const stuck: string[] = [];
      for (const id of ids.filter((i) => !done.has(i)).slice(0, 5)) {
        const run = await repo.inspect(id).catch(() => undefined);
        const open = run?.nodes.filter((n) => n.status !== 'COMPLETED') ?? [];
        stuck.push(
          `${id}: ${open.map((n) => `${n.spec.name}=${n.status}${n.claim ? `(claim ${n.claim.id}${n.claim.orphaned ? ' orphaned' : ''})` : ''}/${n.attempts.length}`).join(' ')}`,
        );
      }
      assert.fail(
        `${ids.length - done.size} of ${ids.length} runs did not complete in ${ms} ms\n${stuck.join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return ids.map((id) => done.get(id)!);
}

/** A repository that retries for a minute through outages, and an agent pool on it. */
async function poolOn(cluster: EtcdCluster): Promise<{ repo: EtcdRepository; pool: AgentPool }> {
  const repo = new EtcdRepository({
    hosts: cluster.endpoints,
    namespace: uniqueNamespace(),
    retryForMs: 60_000,
  });
  const pool = new AgentPool({ repository: repo, runtimes: [noop], concurrency: 8, leaseTtlMs: 5_000 });
  await pool.start();
  return { repo, pool };
}

/** Starts runs one by one, retrying through an unavailable store. */
async function startRuns(repo: EtcdRepository, count: number, ids: string[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    for (;;) {
      try {
        ids.push((await repo.start(sevenNode())).id);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

describe('etcd faults', { concurrency: false, timeout: 240_000 }, () => {
  const clusters: EtcdCluster[] = [];
  after(async () => {
    for (const c of clusters) await c.destroy();
  });

  it('a 3-member cluster loses a member mid-load: every run completes', async () => {
    const cluster = await EtcdCluster.start(3);
    clusters.push(cluster);
    const { repo, pool } = await poolOn(cluster);
    try {
      const ids: string[] = [];
      const starting = startRuns(repo, 100, ids);
      while (pool.counters.finished.SUCCESS < 100) await new Promise((r) => setTimeout(r, 20));
      await cluster.members[0]!.kill();
      await starting;
      const runs = await allComplete(repo, ids, 120_000);
      assert.ok(
        runs.every((r) => r.conclusion === 'SUCCESS'),
        'every run succeeded',
      );
      for (const r of runs) for (const n of r.nodes) assert.equal(n.attempts.at(-1)?.conclusion, 'SUCCESS');
    } finally {
      await pool.stop({ graceMs: 2_000 });
      await repo.close();
    }
  });

  it('etcd restarted (kill -9) mid-load: every run completes without restarting the agents', async () => {
    const cluster = await EtcdCluster.start(1);
    clusters.push(cluster);
    const { repo, pool } = await poolOn(cluster);
    try {
      const ids: string[] = [];
      const starting = startRuns(repo, 60, ids);
      while (pool.counters.finished.SUCCESS < 60) await new Promise((r) => setTimeout(r, 20));
      await cluster.restart(0);
      await starting;
      const runs = await allComplete(repo, ids, 120_000);
      assert.ok(
        runs.every((r) => r.conclusion === 'SUCCESS'),
        'every run succeeded',
      );
    } finally {
      await pool.stop({ graceMs: 2_000 });
      await repo.close();
    }
  });

  it('etcd restarted mid-load under adagiod (api + 2 agents): every run completes, no process restarted', async () => {
    const cluster = await EtcdCluster.start(1);
    clusters.push(cluster);
    const d = await deploy(cluster, 2, ['--agents', '4', '--lease-ttl', '5s']);
    try {
      const ids: string[] = [];
      const starting = startRunsVia(d.client, sevenNode('debug'), 60, ids);
      // Restart once part of the load has finished and the rest is in flight.
      while ((await retrying(() => d.client.stats())).nodeCounts.COMPLETED < 100)
        await new Promise((r) => setTimeout(r, 50));
      await cluster.restart(0);
      await starting;
      const runs = await allCompleteVia(d.client, ids, 120_000);
      assert.ok(
        runs.every((r) => r.conclusion === 'SUCCESS'),
        'every run succeeded',
      );
      for (const p of [d.api, ...d.agents]) assert.equal(p.child.exitCode, null, 'the process kept running');
    } finally {
      await d.stop();
    }
  });

  it('a 10,000-node run is written in chunks and is whole once start returns', async () => {
    const cluster = await EtcdCluster.start(1);
    clusters.push(cluster);
    const repo = new EtcdRepository({ hosts: cluster.endpoints, namespace: uniqueNamespace() });
    try {
      // Wide: 9,999 independent nodes joining into one sink.
      const nodes = Array.from({ length: 10_000 }, (_, i) => ({
        name: `n${i}`,
        runtime: 'noop',
        metadata: {},
        retry: {},
      }));
      const edges = nodes.slice(0, -1).map((n) => ({ source: n.name, destination: 'n9999' }));
      const run = await repo.start({ nodes, edges });
      const stored = await repo.inspect(run.id);
      assert.equal(stored.nodes.length, 10_000);
      assert.equal(stored.edges.length, 9_999);
      assert.equal(stored.nodes.filter((n) => n.status === 'READY').length, 9_999);
      assert.deepEqual((await repo.stats()).nodeCounts, {
        WAITING: 1,
        READY: 9_999,
        RUNNING: 0,
        COMPLETED: 0,
      });
      // The first nodes are claimable at once.
      const lease = await repo.grantLease(10_000);
      const c = await repo.claim({ runId: run.id, node: 'n0', leaseId: lease.id, agentId: 'probe' });
      assert.ok(c, 'a READY node of the big run is claimable');
      await repo.finish({ runId: run.id, node: 'n0', claimId: c.claimId, conclusion: 'SUCCESS' });
      await repo.revokeLease(lease.id);
    } finally {
      await repo.close();
    }
  });
});
