import { Etcd3 } from 'etcd3';
import { AgentPool } from '../src/agent/index.js';
import { EtcdRepository } from '../src/backends/etcd/index.js';
import type { GraphSpec } from '../src/model/index.js';
import type { Runtime } from '../src/runtimes/runtime.js';
import { EtcdCluster } from '../test/support/etcd.js';
import { sevenNode, wideAndLong } from './graphs.js';
import { percentile, report, timed } from './report.js';

/**
 * etcd backend, against an etcd this benchmark starts itself (loopback, RAM
 * data dir when available):
 * - no-op nodes/s end to end for 1,000 runs of the 7-node DAG (AgentPool),
 *   against etcd's conditional-transaction ceiling measured in the same run
 *   (single-key compare-and-put txns at the same concurrency). A node needs
 *   at least two transactions (claim, finish): target nodes/s >= 50% of ceiling/2.
 * - READY → claimed latency p50/p99, idle and under that load.
 * - per-transition cost (claim + finish latency) in a 10,000-node run vs a 7-node run (target within 2x).
 */
const CONCURRENCY = 16;
const RUNS = 1_000;

const noop: Runtime = { name: 'noop', run: async () => ({ conclusion: 'SUCCESS' }) };

export async function run(): Promise<void> {
  const cluster = await EtcdCluster.start(1);
  try {
    const repo = new EtcdRepository({ hosts: cluster.endpoints, namespace: `bench-${process.pid}/` });
    try {
      await drain(repo, 100); // warm-up
      const idle = await claimLatency(repo, 50);
      const loadLatency: number[] = [];
      // The ceiling right before and right after the end-to-end run, averaged (as for PostgreSQL): on a
      // shared machine the load moves, and the ratio should compare the two under the same conditions.
      const before = await txnCeiling(cluster.endpoints, CONCURRENCY);
      const e2e = await drain(repo, RUNS, loadLatency);
      const after = await txnCeiling(cluster.endpoints, CONCURRENCY);
      const ceiling = (before + after) / 2;
      const rate = (RUNS * 7) / (e2e.ms / 1000);
      // As deployed: runs started by an API process, worked by an agent process (two repositories, so
      // neither shares what the other has seen).
      const api = new EtcdRepository({ hosts: cluster.endpoints, namespace: `bench-${process.pid}/` });
      const split = await drain(repo, RUNS, undefined, api).finally(() => api.close());
      const splitRate = (RUNS * 7) / (split.ms / 1000);
      const small = await transitionCost(repo, sevenNode('cost'), 200);
      // Every transition of the run: the root's 5,000-dependent fan-out and the 5,000-upstream join included.
      const large = await transitionCost(repo, wideAndLong(10_000, 'cost'), 10_000);
      loadLatency.sort((a, b) => a - b);
      report('etcd', [
        [
          `7-node DAG x ${RUNS.toLocaleString('en-US')} runs (AgentPool, ${CONCURRENCY} slots, no-op)`,
          `${fmt(rate)} nodes/s`,
          `${RUNS * 7} nodes in ${e2e.ms.toFixed(0)} ms`,
        ],
        [
          `conditional-txn ceiling (single-key compare-and-put, ${CONCURRENCY} clients)`,
          `${fmt(ceiling)} txn/s`,
          `mean of ${fmt(before)} just before and ${fmt(after)} just after the end-to-end run`,
        ],
        ['ratio of nodes/s to ceiling/2', `${((100 * rate) / (ceiling / 2)).toFixed(0)}%`, 'target >= 50%'],
        [
          `the same, runs started through a second repository (as by an API process)`,
          `${fmt(splitRate)} nodes/s`,
          `${((100 * splitRate) / (ceiling / 2)).toFixed(0)}% of ceiling/2`,
        ],
        ['READY → claimed, idle', `${idle.p50.toFixed(1)} ms`, `p50; p99 ${idle.p99.toFixed(1)} ms`],
        [
          'READY → claimed, under the 1,000-run load',
          `${percentile(loadLatency, 50).toFixed(1)} ms`,
          `p50; p99 ${percentile(loadLatency, 99).toFixed(1)} ms`,
        ],
        ['claim + finish, 7-node runs', `${small.toFixed(2)} ms`, 'mean per node, one at a time'],
        [
          'claim + finish, one 10,000-node run (wideAndLong: fan-out 5,000, join 5,000, chain)',
          `${large.toFixed(2)} ms`,
          `mean per node; ${(large / small).toFixed(2)}x the 7-node cost, target <= 2x`,
        ],
      ]);
    } finally {
      await repo.deleteNamespace().catch(() => undefined);
      await repo.close();
    }
  } finally {
    await cluster.destroy();
  }
}

/** Starts `runs` runs while an AgentPool drains them; samples READY→claimed latency when asked. */
async function drain(
  repo: EtcdRepository,
  runs: number,
  latency?: number[],
  starter: EtcdRepository = repo,
): Promise<{ ms: number }> {
  const pool = new AgentPool({ repository: repo, runtimes: [noop], concurrency: CONCURRENCY });
  await pool.start();
  try {
    const { ms } = await timed(async () => {
      const before = pool.counters.finished.SUCCESS;
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < runs) {
            next++;
            const t0 = performance.now();
            const run = await starter.start(sevenNode('noop'));
            // Every 20th run: how long until its first root is claimed (seen via inspect polling is too coarse; watch it).
            if (latency && next % 20 === 0) void firstClaim(repo, run.id, t0).then((ms) => latency.push(ms));
          }
        }),
      );
      const deadline = Date.now() + 600_000;
      while (pool.counters.finished.SUCCESS - before < runs * 7) {
        if (Date.now() > deadline) throw new Error('benchmark runs did not complete within 10 minutes');
        await new Promise((r) => setTimeout(r, 5));
      }
    });
    return { ms };
  } finally {
    await pool.stop({ graceMs: 5_000 });
  }
}

/** Time from `t0` (the start call) to the first RUNNING node, seen by a watch. */
async function firstClaim(repo: EtcdRepository, runId: string, t0: number): Promise<number> {
  const signal = AbortSignal.timeout(60_000);
  for await (const ev of repo.watch(runId, { signal })) {
    if (ev.type === 'snapshot' && ev.run.nodes.some((n) => n.status !== 'READY' && n.status !== 'WAITING'))
      break;
    if (ev.type === 'node' && ev.node.status === 'RUNNING') break;
  }
  return performance.now() - t0;
}

/** Idle READY→claimed: one run at a time, an idle pool, time from start until its first node is claimed. */
async function claimLatency(repo: EtcdRepository, samples: number) {
  const pool = new AgentPool({ repository: repo, runtimes: [noop], concurrency: CONCURRENCY });
  await pool.start();
  const times: number[] = [];
  try {
    for (let i = 0; i < samples; i++) {
      const t0 = performance.now();
      const run = await repo.start({
        nodes: [{ name: 'only', runtime: 'noop', metadata: {}, retry: {} }],
        edges: [],
      });
      times.push(await firstClaim(repo, run.id, t0));
    }
  } finally {
    await pool.stop({ graceMs: 2_000 });
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** Mean claim+finish time per node, driving READY nodes one at a time (no contention), over `nodes` transitions. */
async function transitionCost(repo: EtcdRepository, spec: GraphSpec, nodes: number): Promise<number> {
  const lease = await repo.grantLease(60_000);
  // A 10,000-node run outlasts one TTL: keep the lease alive like an agent would.
  const heartbeat = setInterval(() => void repo.keepAlive(lease.id).catch(() => undefined), 10_000);
  let done = 0;
  let total = 0;
  while (done < nodes) {
    const run = await repo.start(spec);
    const ac = new AbortController();
    const ready: { runId: string; node: string }[] = [];
    let wake: (() => void) | undefined;
    const pump = (async () => {
      for await (const ev of repo.subscribe({ runtimes: ['cost'], signal: ac.signal })) {
        if (ev.type === 'NODE_READY' && ev.runId === run.id) {
          ready.push({ runId: ev.runId, node: ev.node });
          wake?.();
        }
      }
    })();
    let left = spec.nodes.length;
    while (left > 0 && done < nodes) {
      const job = ready.shift();
      if (!job) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
        continue;
      }
      const t0 = performance.now();
      const c = await repo.claim({ ...job, leaseId: lease.id, agentId: 'cost' });
      if (!c) continue;
      await repo.finish({ ...job, claimId: c.claimId, conclusion: 'SUCCESS' });
      total += performance.now() - t0;
      done++;
      left--;
    }
    ac.abort();
    await pump;
    if (left > 0) await repo.cancel(run.id);
  }
  clearInterval(heartbeat);
  await repo.revokeLease(lease.id);
  return total / done;
}

/** etcd's own ceiling: single-key compare-and-put transactions (compare mod revision, put), `concurrency` clients. */
async function txnCeiling(hosts: string[], concurrency: number): Promise<number> {
  const client = new Etcd3({ hosts: hosts.map((h) => `http://${h}`) });
  try {
    const keys = Array.from({ length: 10_000 }, (_, i) => Buffer.from(`ceiling/${i}`));
    const revs = new Map<number, string>();
    const round = async (ms: number) => {
      let count = 0;
      const end = Date.now() + ms;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (Date.now() < end) {
            const i = Math.floor(Math.random() * keys.length);
            const key = keys[i]!;
            const res = await client.kv.txn({
              compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: revs.get(i) ?? 0 }],
              success: [{ request_put: { key, value: Buffer.from(String(count)) } }],
              failure: [{ request_range: { key } }],
            });
            const kv = res.succeeded ? undefined : res.responses[0]!.response_range.kvs[0];
            revs.set(i, res.succeeded ? res.header.revision : (kv?.mod_revision ?? '0'));
            count++;
          }
        }),
      );
      return count / (ms / 1000);
    };
    await round(500);
    return await round(3_000);
  } finally {
    await client.delete().prefix('ceiling/');
    client.close();
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
