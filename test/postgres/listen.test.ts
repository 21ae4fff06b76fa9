/**
 * LISTEN/NOTIFY wake-ups: when the listening connection is cut, streams
 * reconnect by themselves and catch up, so no READY node and no transition
 * is lost (rule 8).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PostgresRepository } from '../../src/backends/postgres/index.js';
import type { EventQueue, NodeEvent, WatchEvent } from '../../src/protocol/index.js';
import { POSTGRES_URL, postgresRepository } from '../support/postgres.js';

const node = (name: string) => ({ name, runtime: 'work', metadata: {}, retry: {} });

/** Cuts this repository's LISTEN connection from the server side; returns how many were cut. */
async function cutListener(repo: PostgresRepository): Promise<number> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    const { rows } = await client.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [`adagio-listen ${repo.channel}`],
    );
    return rows.length;
  } finally {
    await client.end();
  }
}

/** A second repository on the same schema, as another process would have. */
function otherProcess(schema: string): Promise<PostgresRepository> {
  return PostgresRepository.connect({ connectionString: POSTGRES_URL, schema, reaperIntervalMs: 0 });
}

/** Collects the events of a subscription to runtime "work" until the signal aborts. */
function subscribed(
  repo: PostgresRepository,
  signal: AbortSignal,
): { events: NodeEvent[]; sub: Promise<void> } {
  const events: NodeEvent[] = [];
  const sub = (async () => {
    for await (const e of repo.subscribe({ runtimes: ['work'], signal })) events.push(e);
  })();
  return { events, sub };
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('PostgreSQL LISTEN reconnect', () => {
  it('a subscriber whose connection is cut still gets every READY node', { timeout: 60_000 }, async () => {
    const { repository: repo, schema, teardown } = await postgresRepository({ reaperIntervalMs: 0 });
    // Runs come from another process: this one's own notices reach its streams without the server.
    const other = await otherProcess(schema);
    const ac = new AbortController();
    try {
      const { events, sub } = subscribed(repo, ac.signal);
      const first = await other.start({ nodes: [node('a')], edges: [] });
      await until('the first NODE_READY', () => events.some((e) => e.runId === first.id));

      for (let round = 0; round < 3; round++) {
        assert.equal(await cutListener(repo), 2, "both processes' LISTEN connections (one channel) to cut");
        // Runs started while the listener is down or reconnecting: no notice reaches it.
        const missed = await other.start({ nodes: [node('a'), node('b')], edges: [] });
        await until(`NODE_READY for the run started while disconnected (round ${round})`, () =>
          ['a', 'b'].every((n) => events.some((e) => e.runId === missed.id && e.node === n)),
        );
      }
      // And notices flow again after the reconnects.
      const later = await other.start({ nodes: [node('z')], edges: [] });
      await until('NODE_READY after reconnecting', () => events.some((e) => e.runId === later.id));
      ac.abort();
      await sub;
    } finally {
      ac.abort();
      await other.close();
      await teardown();
    }
  });

  it('a READY node whose notice was never sent is still delivered, by the periodic catch-up', {
    timeout: 60_000,
  }, async () => {
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({
      reaperIntervalMs: 0,
      catchUpIntervalMs: 200,
    });
    const ac = new AbortController();
    try {
      const { events, sub } = subscribed(repo, ac.signal);
      const run = await repo.start({
        nodes: [node('a'), node('b')],
        edges: [{ source: 'a', destination: 'b' }],
      });
      await until('a READY', () => events.some((e) => e.runId === run.id && e.node === 'a'));
      // What a process that committed a transition and died before its NOTIFY leaves behind:
      // b READY in the table, and no notice about it.
      const client = new pg.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      try {
        await client.query(
          `UPDATE ${schema}.nodes SET status = 'READY', pending_upstream = 0 WHERE run_id = $1 AND name = 'b'`,
          [run.id],
        );
      } finally {
        await client.end();
      }
      await until('b READY without a notice', () => events.some((e) => e.runId === run.id && e.node === 'b'));
      ac.abort();
      await sub;
    } finally {
      ac.abort();
      await teardown();
    }
  });

  it('the periodic catch-up reads the oldest READY nodes only; the rest follow as those are claimed', {
    timeout: 60_000,
  }, async () => {
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({
      reaperIntervalMs: 0,
      catchUpIntervalMs: 100,
      catchUpLimit: 5,
    });
    // Another process whose notices go to a channel nobody listens on: its starts are READY nodes without a notice.
    const silent = await PostgresRepository.connect({
      connectionString: POSTGRES_URL,
      schema,
      reaperIntervalMs: 0,
      notifyChannel: 'nobody_listens',
    });
    const ac = new AbortController();
    try {
      // A READY node without a notice before the subscription: only its first (full) catch-up can deliver it, so
      // once it has, what is started next comes through the periodic catch-ups alone.
      const probe = await silent.start({ nodes: [node('p')], edges: [] });
      const { events, sub } = subscribed(repo, ac.signal);
      await until('the first catch-up', () => events.some((e) => e.runId === probe.id));
      const lease = await repo.grantLease(60_000);
      await repo.claim({ runId: probe.id, node: 'p', leaseId: lease.id, agentId: 'w' });
      const runs: string[] = [];
      for (let i = 0; i < 12; i++) runs.push((await silent.start({ nodes: [node('a')], edges: [] })).id);
      const seen = () => new Set(events.filter((e) => e.runId !== probe.id).map((e) => e.runId));
      for (const [from, to] of [
        [0, 5],
        [5, 10],
        [10, 12],
      ] as const) {
        await until(`runs ${from}-${to - 1} delivered`, () =>
          runs.slice(from, to).every((r) => seen().has(r)),
        );
        // Several more catch-ups: still none of the newer runs while the older ones stay READY.
        const after = events.length;
        await until('more catch-ups', () => events.length >= after + 10);
        assert.deepEqual(
          runs.filter((r) => seen().has(r)),
          runs.slice(0, to),
          'the oldest READY nodes, at most the limit, are read',
        );
        for (const runId of runs.slice(from, to))
          assert.ok(await repo.claim({ runId, node: 'a', leaseId: lease.id, agentId: 'w' }), 'claimable');
      }
      ac.abort();
      await sub;
    } finally {
      ac.abort();
      await silent.close();
      await teardown();
    }
  });

  it('a full catch-up reads a backlog a page at a time, whole runs per page, as the subscriber takes it', {
    timeout: 60_000,
  }, async () => {
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({ reaperIntervalMs: 0, catchUpIntervalMs: 0 });
    // Counts the page reads (white box: the statement's name in the repository's Db).
    const db = (repo as unknown as { db: { query: (name: string, ...rest: unknown[]) => Promise<unknown> } })
      .db;
    const query = db.query.bind(db);
    let pages = 0;
    db.query = (name, ...rest) => {
      if (name === 'subscribe catch-up (oldest)') pages++;
      return query(name, ...rest);
    };
    const ac = new AbortController();
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await repo.ping(); // migrated
      // The backlog as starts would leave it, written in bulk: 10 one-node runs, a run of 2,500 nodes (wider than
      // a page), 3,000 one-node runs; 5,510 READY nodes.
      const id = (i: number) => `R${String(i).padStart(25, '0')}`;
      const runs: [string, number][] = [];
      for (let i = 1; i <= 10; i++) runs.push([id(i), 1]);
      runs.push([id(11), 2_500]);
      for (let i = 12; i < 3_012; i++) runs.push([id(i), 1]);
      await client.query(
        `INSERT INTO ${schema}.runs (id, created_at, edges, node_count, remaining)
         SELECT r, 0, '[]', n, n FROM unnest($1::text[], $2::int[]) AS x(r, n)`,
        [runs.map((r) => r[0]), runs.map((r) => r[1])],
      );
      await client.query(
        `INSERT INTO ${schema}.nodes (run_id, name, idx, runtime, spec, upstream, downstream, status, pending_upstream)
         SELECT x.r, 'n' || g, g, 'work', jsonb_build_object('name', 'n' || g, 'runtime', 'work', 'metadata', '{}'::jsonb,
           'retry', '{}'::jsonb), '{}', '{}', 'READY', 0
         FROM unnest($1::text[], $2::int[]) AS x(r, n), generate_series(0, x.n - 1) g`,
        [runs.map((r) => r[0]), runs.map((r) => r[1])],
      );
      const events: NodeEvent[] = [];
      const iterator = repo.subscribe({ runtimes: ['work'], signal: ac.signal })[Symbol.asyncIterator]();
      events.push((await iterator.next()).value as NodeEvent);
      await new Promise((r) => setTimeout(r, 300)); // time enough to (wrongly) read on
      assert.equal(pages, 1, 'one page read while the subscriber has taken one event');
      while (events.length < 5_510) events.push((await iterator.next()).value as NodeEvent);
      const keys = events.map((e) => `${e.runId}/${e.node}`);
      assert.equal(new Set(keys).size, 5_510, 'every READY node once');
      assert.ok(
        events.every((e, i) => i === 0 || events[i - 1]!.runId <= e.runId),
        'oldest run first',
      );
      assert.equal(
        pages,
        3,
        'three pages: the wide run whole in the first, then 2,000 and 1,000 one-node runs',
      );
      ac.abort();
      await iterator.return?.();
    } finally {
      ac.abort();
      await client.end();
      await teardown();
    }
  });

  it('a watch survives a cut connection and reports what changed meanwhile', {
    timeout: 60_000,
  }, async () => {
    const { repository: repo, schema, teardown } = await postgresRepository({ reaperIntervalMs: 0 });
    // The transitions come from another process, so the watcher hears of them only through the server.
    const other = await otherProcess(schema);
    const ac = new AbortController();
    try {
      const lease = await other.grantLease(60_000);
      const run = await other.start({
        nodes: [node('a'), node('b')],
        edges: [{ source: 'a', destination: 'b' }],
      });
      const events: WatchEvent[] = [];
      const watch = (async () => {
        for await (const e of repo.watch(run.id, { signal: ac.signal })) events.push(e);
      })();
      await until('the snapshot', () => events.length > 0);
      const a = await other.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'w' });
      assert.ok(a);
      await until('a RUNNING', () => events.some((e) => e.type === 'node' && e.node.spec.name === 'a'));
      await cutListener(repo);
      await other.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS' });
      const b = await other.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'w' });
      assert.ok(b);
      await other.finish({ runId: run.id, node: 'b', claimId: b.claimId, conclusion: 'SUCCESS' });
      await watch; // ends by itself: the re-read after reconnecting sees the run completed
      const last = events[events.length - 1]!;
      assert.ok(last.type === 'node');
      assert.equal(last.runStatus, 'COMPLETED');
      assert.equal(last.runConclusion, 'SUCCESS');
      const final = new Map<string, string>();
      for (const e of events) if (e.type === 'node') final.set(e.node.spec.name, e.node.status);
      assert.deepEqual(Object.fromEntries(final), { a: 'COMPLETED', b: 'COMPLETED' });
    } finally {
      ac.abort();
      await other.close();
      await teardown();
    }
  });

  /** Collects a watch's events until it ends. */
  const watching = (repo: PostgresRepository, runId: string, signal: AbortSignal) => {
    const events: WatchEvent[] = [];
    let ended = false;
    const done = (async () => {
      for await (const e of repo.watch(runId, { signal })) events.push(e);
      ended = true;
    })();
    return { events, done, ended: () => ended };
  };
  /** The last status each node was reported in, and the run's last reported status. */
  const lastSeen = (events: WatchEvent[]) => {
    const nodes = new Map<string, string>();
    let run = '';
    for (const e of events) {
      if (e.type === 'snapshot') {
        for (const n of e.run.nodes) nodes.set(n.spec.name, n.status);
        run = e.run.status;
      } else if (e.type === 'node') {
        nodes.set(e.node.spec.name, e.node.status);
        run = e.runStatus;
      }
    }
    return { nodes: Object.fromEntries(nodes), run };
  };
  /** Another process whose notices reach nobody: what one that died between its commits and its NOTIFYs leaves. */
  const silentProcess = (schema: string) =>
    PostgresRepository.connect({
      connectionString: POSTGRES_URL,
      schema,
      reaperIntervalMs: 0,
      notifyChannel: 'nobody_listens',
    });

  it('a watch told the run completed reports the changes whose notices have not reached it before it ends', {
    timeout: 60_000,
  }, async () => {
    // No periodic check: what is reported comes from the COMPLETED notice alone.
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({ reaperIntervalMs: 0, catchUpIntervalMs: 0 });
    const silent = await silentProcess(schema);
    const watcher = await otherProcess(schema);
    const ac = new AbortController();
    try {
      const run = await repo.start({ nodes: [node('x'), node('y')], edges: [] });
      const w = watching(watcher, run.id, ac.signal);
      await until('the snapshot', () => w.events.length > 0);
      const lease = await repo.grantLease(60_000);
      const x = await silent.claim({ runId: run.id, node: 'x', leaseId: lease.id, agentId: 'b' });
      const y = await repo.claim({ runId: run.id, node: 'y', leaseId: lease.id, agentId: 'a' });
      assert.ok(x && y);
      // x finishes in the silent process (its notice is still on its way, as far as the watch knows), then y
      // completes the run here, and that notice arrives.
      await silent.finish({ runId: run.id, node: 'x', claimId: x.claimId, conclusion: 'SUCCESS' });
      await repo.finish({ runId: run.id, node: 'y', claimId: y.claimId, conclusion: 'SUCCESS' });
      await until('the watch ends', w.ended);
      assert.deepEqual(lastSeen(w.events), { nodes: { x: 'COMPLETED', y: 'COMPLETED' }, run: 'COMPLETED' });
      const last = w.events.at(-1)!;
      assert.ok(last.type === 'node' && last.runStatus === 'COMPLETED' && last.runConclusion === 'SUCCESS');
      await repo.revokeLease(lease.id);
    } finally {
      ac.abort();
      await Promise.all([silent.close(), watcher.close()]);
      await teardown();
    }
  });

  it('a watch finds the changes whose notices never came, and where the run ended, by its periodic check', {
    timeout: 60_000,
  }, async () => {
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({
      reaperIntervalMs: 0,
      catchUpIntervalMs: 200,
    });
    const silent = await silentProcess(schema);
    const ac = new AbortController();
    try {
      const run = await repo.start({
        nodes: [node('a'), node('b')],
        edges: [{ source: 'a', destination: 'b' }],
      });
      const w = watching(repo, run.id, ac.signal);
      await until('the snapshot', () => w.events.length > 0);
      const lease = await silent.grantLease(60_000);
      const a = await silent.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'b' });
      assert.ok(a);
      await until('a RUNNING', () => lastSeen(w.events).nodes.a === 'RUNNING');
      await silent.finish({ runId: run.id, node: 'a', claimId: a.claimId, conclusion: 'SUCCESS' });
      await until('a COMPLETED, b READY', () => {
        const seen = lastSeen(w.events).nodes;
        return seen.a === 'COMPLETED' && seen.b === 'READY';
      });
      const b = await silent.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'b' });
      assert.ok(b);
      await silent.finish({ runId: run.id, node: 'b', claimId: b.claimId, conclusion: 'FAIL' });
      await until('the watch ends', w.ended);
      assert.deepEqual(lastSeen(w.events), { nodes: { a: 'COMPLETED', b: 'COMPLETED' }, run: 'COMPLETED' });
      const last = w.events.at(-1)!;
      assert.ok(last.type === 'node' && last.runConclusion === 'FAIL');
      await silent.revokeLease(lease.id);
    } finally {
      ac.abort();
      await silent.close();
      await teardown();
    }
  });

  it('a subscriber that stops taking does not have the same READY nodes queued again every interval', {
    timeout: 60_000,
  }, async () => {
    const {
      repository: repo,
      schema,
      teardown,
    } = await postgresRepository({
      reaperIntervalMs: 0,
      catchUpIntervalMs: 50,
      catchUpLimit: 5,
    });
    const silent = await silentProcess(schema);
    const ac = new AbortController();
    try {
      for (let i = 0; i < 20; i++) await silent.start({ nodes: [node('a')], edges: [] });
      // Subscribed, never taken from: what a busy agent pool's subscription is.
      const sub = repo.subscribe({ runtimes: ['work'], signal: ac.signal }) as EventQueue<NodeEvent>;
      await until('the first catch-up', () => sub.queued >= 20);
      await new Promise((r) => setTimeout(r, 1_000)); // twenty intervals
      assert.equal(sub.queued, 20, 'the periodic catch-up queued nothing more');
      // Taken, the queue empties, and the safety net reads the oldest again.
      const taken: NodeEvent[] = [];
      for await (const e of sub) {
        taken.push(e);
        if (taken.length === 25) break;
      }
      assert.equal(new Set(taken.slice(0, 20).map((e) => e.runId)).size, 20);
    } finally {
      ac.abort();
      await silent.close();
      await teardown();
    }
  });
});
