/**
 * LISTEN/NOTIFY wake-ups: when the listening connection is cut, streams
 * reconnect by themselves and catch up, so no READY node and no transition
 * is lost (rule 8).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { PostgresRepository } from '../../src/backends/postgres/index.js';
import type { NodeEvent, WatchEvent } from '../../src/protocol/index.js';
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
      const events: NodeEvent[] = [];
      const sub = (async () => {
        for await (const e of repo.subscribe({ runtimes: ['work'], signal: ac.signal })) events.push(e);
      })();
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
      const events: NodeEvent[] = [];
      const sub = (async () => {
        for await (const e of repo.subscribe({ runtimes: ['work'], signal: ac.signal })) events.push(e);
      })();
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
});
