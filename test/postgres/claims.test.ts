/**
 * Claims on PostgreSQL under real contention: several repositories (as
 * several processes would have), each with its own pool, racing on the same
 * rows. Exactly one claimer wins a node; no node is ever recorded twice.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PostgresRepository } from '../../src/backends/postgres/index.js';
import type { GraphSpec } from '../../src/model/index.js';
import {
  ClaimConflictError,
  InvalidArgumentError,
  type NodeEvent,
  NotFoundError,
} from '../../src/protocol/index.js';
import { dropSchema, postgresRepository, uniqueSchema } from '../support/postgres.js';

const node = (name: string) => ({ name, runtime: 'work', metadata: {}, retry: {} });

describe('PostgreSQL claims under contention', () => {
  const schema = uniqueSchema();
  const repos: PostgresRepository[] = [];

  before(async () => {
    // Five "processes" on one schema, 6 connections each.
    for (let i = 0; i < 5; i++) repos.push((await postgresRepository({ schema, poolSize: 6 })).repository);
  });
  after(async () => {
    await Promise.all(repos.map((r) => r.close()));
    await dropSchema(schema);
  });

  it('50 concurrent claimers of one READY node: exactly one wins', { timeout: 60_000 }, async () => {
    const run = await repos[0]!.start({ nodes: [node('only')], edges: [] });
    const leases = await Promise.all(repos.map((r) => r.grantLease(60_000)));
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        repos[i % repos.length]!.claim({
          runId: run.id,
          node: 'only',
          leaseId: leases[i % repos.length]!.id,
          agentId: `claimer-${i}`,
        }),
      ),
    );
    const winners = results.filter((r) => r !== undefined);
    assert.equal(winners.length, 1, 'one claimer wins');
    const winner = winners[0]!;
    const stored = await repos[1]!.inspect(run.id);
    assert.equal(stored.nodes[0]!.status, 'RUNNING');
    assert.equal(stored.nodes[0]!.claim?.id, winner.claimId);
    assert.equal(stored.nodes[0]!.claim?.agentId, winner.node.claim?.agentId);
  });

  it('50 claimers draining 300 nodes: every node runs exactly once', { timeout: 120_000 }, async () => {
    const nodes = Array.from({ length: 300 }, (_, i) => node(`n${i}`));
    // A root fanning out, so claims and finishes overlap on shared rows (the run row, dependents).
    const spec: GraphSpec = {
      nodes: [node('root'), ...nodes],
      edges: nodes.map((n) => ({ source: 'root', destination: n.name })),
    };
    const run = await repos[0]!.start(spec);
    const leases = await Promise.all(repos.map((r) => r.grantLease(60_000)));
    const names = ['root', ...nodes.map((n) => n.name)];
    let finished = 0;
    let conflicts = 0;
    const wins = new Map<string, number>();
    const ac = new AbortController();
    const ready: NodeEvent[] = [];
    const wake: (() => void)[] = [];
    const pump = (async () => {
      for await (const e of repos[4]!.subscribe({ runtimes: ['work'], signal: ac.signal })) {
        // Every claimer sees every event: the point is that they race for it.
        for (let i = 0; i < 5; i++) ready.push(e);
        for (const w of wake.splice(0)) w();
      }
    })();
    const claimer = async (i: number) => {
      const repo = repos[i % repos.length]!;
      const lease = leases[i % repos.length]!;
      while (finished < names.length) {
        const ev = ready.shift();
        if (!ev) {
          await new Promise<void>((r) => {
            wake.push(r);
            setTimeout(r, 50);
          });
          continue;
        }
        const claimed = await repo.claim({
          runId: ev.runId,
          node: ev.node,
          leaseId: lease.id,
          agentId: `c${i}`,
        });
        if (!claimed) continue;
        wins.set(ev.node, (wins.get(ev.node) ?? 0) + 1);
        try {
          await repo.finish({
            runId: ev.runId,
            node: ev.node,
            claimId: claimed.claimId,
            conclusion: 'SUCCESS',
          });
          finished++;
        } catch (e) {
          if (!(e instanceof ClaimConflictError)) throw e;
          conflicts++;
        }
      }
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => claimer(i)));
    ac.abort();
    await pump;
    assert.equal(conflicts, 0, 'no finish was refused: no claim was ever shared');
    assert.equal(finished, names.length);
    for (const n of names) assert.equal(wins.get(n), 1, `${n} was claimed once`);
    const done = await repos[2]!.inspect(run.id);
    assert.equal(done.status, 'COMPLETED');
    assert.equal(done.conclusion, 'SUCCESS');
    for (const n of done.nodes) assert.equal(n.attempts.length, 1, `${n.spec.name} has one attempt`);
    const stats = await repos[3]!.stats();
    // This run, plus the one-node run above whose node is still RUNNING.
    assert.deepEqual(stats.nodeCounts, { WAITING: 0, READY: 0, RUNNING: 1, COMPLETED: 301 });
    assert.equal(stats.runCount, 2);
  });

  it('a finish racing a cancel: one of them wins, the run ends consistent', { timeout: 60_000 }, async () => {
    const repo = repos[0]!;
    const lease = await repo.grantLease(60_000);
    for (let round = 0; round < 20; round++) {
      const run = await repo.start({
        nodes: [node('a'), node('b'), node('c')],
        edges: [{ source: 'a', destination: 'b' }],
      });
      const a = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'x' });
      const c = await repo.claim({ runId: run.id, node: 'c', leaseId: lease.id, agentId: 'x' });
      assert.ok(a && c);
      const [fin, cancelled] = await Promise.allSettled([
        repos[1]!.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS' }),
        repos[2]!.cancel(run.id),
      ]);
      assert.equal(cancelled.status, 'fulfilled');
      if (fin.status === 'rejected') assert.ok(fin.reason instanceof ClaimConflictError, String(fin.reason));
      const end = await repo.inspect(run.id);
      assert.equal(end.status, 'COMPLETED');
      assert.equal(end.conclusion, 'CANCELLED');
      const byName = Object.fromEntries(end.nodes.map((n) => [n.spec.name, n]));
      assert.deepEqual(
        byName.a!.attempts.map((x) => x.conclusion),
        fin.status === 'fulfilled' ? ['SUCCESS'] : ['CANCELLED'],
      );
      assert.deepEqual(
        byName.c!.attempts.map((x) => x.conclusion),
        ['CANCELLED'],
      );
      assert.equal(byName.b!.attempts.length, 0);
    }
  });
  it('concurrent finishes from one process (batched) each get their own answer', {
    timeout: 60_000,
  }, async () => {
    const repo = repos[0]!;
    const lease = await repo.grantLease(60_000);
    // Ten runs of three independent nodes each, plus a join: siblings finish together.
    const spec: GraphSpec = {
      nodes: [node('x'), node('y'), node('z'), node('join')],
      edges: ['x', 'y', 'z'].map((s) => ({ source: s, destination: 'join' })),
    };
    const runs = await Promise.all(Array.from({ length: 10 }, () => repo.start(spec)));
    const claims = await Promise.all(
      runs.flatMap((r) =>
        ['x', 'y', 'z'].map((n) => repo.claim({ runId: r.id, node: n, leaseId: lease.id, agentId: 'batch' })),
      ),
    );
    assert.ok(claims.every((c) => c !== undefined));
    const outcomes = await Promise.allSettled([
      ...claims.map((c, i) =>
        repo.finish({
          runId: c!.runId,
          node: c!.node.spec.name,
          claimId: c!.claimId,
          conclusion: 'SUCCESS',
          output: new TextEncoder().encode(`out-${i}`),
        }),
      ),
      // A stale claim and an unknown run in the same burst: refused, without affecting the others.
      repo.finish({ runId: runs[0]!.id, node: 'join', claimId: 'stale', conclusion: 'SUCCESS' }),
      repo.finish({ runId: 'no-such-run', node: 'x', claimId: 'c', conclusion: 'SUCCESS' }),
      // And a conclusion finish does not take.
      repo.finish({ runId: runs[1]!.id, node: 'join', claimId: 'c', conclusion: 'CANCELLED' as 'SUCCESS' }),
    ]);
    const rejected = outcomes.slice(claims.length);
    assert.ok(outcomes.slice(0, claims.length).every((o) => o.status === 'fulfilled'));
    assert.ok(rejected[0]!.status === 'rejected' && rejected[0]!.reason instanceof ClaimConflictError);
    assert.ok(rejected[1]!.status === 'rejected' && rejected[1]!.reason instanceof NotFoundError);
    assert.ok(rejected[2]!.status === 'rejected' && rejected[2]!.reason instanceof InvalidArgumentError);
    for (const [r, run] of runs.entries()) {
      const state = await repos[2]!.inspect(run.id);
      const join = state.nodes.find((n) => n.spec.name === 'join')!;
      assert.equal(join.status, 'READY', `run ${r}: join READY once x, y and z succeeded`);
      for (const [j, n] of ['x', 'y', 'z'].entries()) {
        const stored = state.nodes.find((s) => s.spec.name === n)!;
        assert.deepEqual(
          stored.attempts.map((a) => [a.conclusion, new TextDecoder().decode(a.output)]),
          [['SUCCESS', `out-${r * 3 + j}`]],
        );
      }
    }
  });

  it('concurrent starts from one process (batched): every run stored whole, counters exact', {
    timeout: 60_000,
  }, async () => {
    const schemaOwn = uniqueSchema();
    const { repository: repo } = await postgresRepository({ schema: schemaOwn, poolSize: 4 });
    try {
      // Small runs and two large ones, so batches split on the node limit as well as on count.
      const large = (n: number): GraphSpec => ({
        nodes: Array.from({ length: n }, (_, i) => node(`n${i}`)),
        edges: Array.from({ length: n - 1 }, (_, i) => ({ source: `n${i}`, destination: `n${i + 1}` })),
      });
      const specs: GraphSpec[] = Array.from({ length: 120 }, (_, i) =>
        i === 7 || i === 60
          ? large(1_500)
          : { nodes: [node('a'), node('b')], edges: [{ source: 'a', destination: 'b' }] },
      );
      const runs = await Promise.all(specs.map((s) => repo.start(s)));
      assert.equal(new Set(runs.map((r) => r.id)).size, specs.length, 'one id per run');
      for (const [i, run] of runs.entries()) {
        const stored = await repo.inspect(run.id);
        assert.equal(stored.nodes.length, specs[i]!.nodes.length, `run ${i}: every node stored`);
        assert.equal(stored.nodes.filter((n) => n.status === 'READY').length, 1, `run ${i}: its root READY`);
        assert.deepEqual(stored.edges, specs[i]!.edges);
      }
      const stats = await repo.stats();
      assert.equal(stats.runCount, specs.length);
      assert.deepEqual(stats.nodeCounts, {
        WAITING: 118 * 1 + 2 * 1_499,
        READY: specs.length,
        RUNNING: 0,
        COMPLETED: 0,
      });
    } finally {
      await repo.close();
      await dropSchema(schemaOwn);
    }
  });
});
