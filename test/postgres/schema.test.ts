/**
 * Schema management and connection handling: concurrent migrations, schema
 * isolation, connection options in the URL, clear errors when PostgreSQL
 * is not there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { MIGRATIONS, PostgresRepository } from '../../src/backends/postgres/index.js';
import { migrate } from '../../src/backends/postgres/migrations.js';
import { InvalidArgumentError, UnavailableError } from '../../src/protocol/index.js';
import {
  dropSchema,
  freePort,
  POSTGRES_URL,
  postgresRepository,
  requirePostgres,
  uniqueSchema,
} from '../support/postgres.js';

async function sql<T extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<T[]> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    return (await client.query<T>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The checked-in dump of the schema the migrations build (see src/backends/postgres/sql.ts). */
const SCHEMA_DUMP = fileURLToPath(new URL('../../src/backends/postgres/schema.sql', import.meta.url));
/** Set to rewrite SCHEMA_DUMP from a freshly migrated schema after adding a migration. */
const UPDATE_DUMP = process.env.ADAGIO_UPDATE_SCHEMA_DUMP === '1';

/**
 * `pg_dump --schema-only` of one schema, normalised so it compares across
 * runs and machines: no comments, no session SET or \restrict lines, the test's schema
 * name written as the default "adagio", blank lines collapsed.
 */
function dumpSchema(schema: string): string {
  const raw = execFileSync(
    'pg_dump',
    ['--schema-only', '--no-owner', '--no-privileges', '--schema', schema, '--dbname', POSTGRES_URL],
    { encoding: 'utf8' },
  );
  const lines = raw
    .split('\n')
    // \restrict and \unrestrict carry a random key per dump (pg_dump since 15.14).
    .filter((l) => !l.startsWith('--') && !/^SET |^SELECT pg_catalog\.set_config|^\\(un)?restrict /.test(l))
    .map((l) => l.replaceAll(schema, 'adagio').trimEnd());
  return `${lines
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim()}\n`;
}

describe('PostgreSQL schema and connections', () => {
  it('a freshly migrated schema is exactly the checked-in dump (src/backends/postgres/schema.sql)', async () => {
    const { schema, teardown } = await postgresRepository({ reaperIntervalMs: 0 });
    try {
      const dump = dumpSchema(schema);
      if (UPDATE_DUMP) writeFileSync(SCHEMA_DUMP, dump);
      assert.ok(dump.includes('CREATE FUNCTION adagio.finish_nodes('), 'the dump has the functions');
      assert.equal(
        dump,
        readFileSync(SCHEMA_DUMP, 'utf8'),
        'the migrations no longer build schema.sql: after adding a migration, rewrite it with ADAGIO_UPDATE_SCHEMA_DUMP=1 npm test -- test/postgres/schema and review the diff',
      );
    } finally {
      await teardown();
    }
  });

  it('eight processes starting at once migrate the schema exactly once', { timeout: 60_000 }, async () => {
    await requirePostgres();
    const schema = uniqueSchema();
    try {
      const repos = await Promise.all(
        Array.from({ length: 8 }, () =>
          PostgresRepository.connect({
            connectionString: POSTGRES_URL,
            schema,
            poolSize: 2,
            reaperIntervalMs: 0,
          }),
        ),
      );
      try {
        const versions = await sql<{ version: number }>(
          `SELECT version FROM ${schema}.schema_migrations ORDER BY 1`,
        );
        assert.deepEqual(
          versions.map((v) => v.version),
          MIGRATIONS.map((m) => m.version),
        );
        // Every process works on the one schema.
        const run = await repos[3]!.start({
          nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
          edges: [],
        });
        assert.equal((await repos[6]!.inspect(run.id)).id, run.id);
      } finally {
        await Promise.all(repos.map((r) => r.close()));
      }
      // A restart finds the schema current and changes nothing.
      const again = await PostgresRepository.connect({
        connectionString: POSTGRES_URL,
        schema,
        reaperIntervalMs: 0,
      });
      await again.close();
      const rows = await sql(`SELECT version FROM ${schema}.schema_migrations`);
      assert.equal(rows.length, MIGRATIONS.length);
    } finally {
      await dropSchema(schema);
    }
  });

  it('upgrades a schema left at version 1; runs in flight carry on', { timeout: 60_000 }, async () => {
    await requirePostgres();
    const schema = uniqueSchema();
    const client = new pg.Client({ connectionString: POSTGRES_URL });
    await client.connect();
    try {
      await migrate(client, schema, MIGRATIONS.slice(0, 1));
      const old = await sql<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`);
      assert.deepEqual(
        old.map((r) => r.version),
        [1],
      );
      // Connecting upgrades it; finishing (version 2's function) then works on the upgraded schema.
      const repo = await PostgresRepository.connect({
        connectionString: POSTGRES_URL,
        schema,
        reaperIntervalMs: 0,
      });
      try {
        const versions = await sql<{ version: number }>(
          `SELECT version FROM ${schema}.schema_migrations ORDER BY 1`,
        );
        assert.deepEqual(
          versions.map((v) => v.version),
          MIGRATIONS.map((m) => m.version),
        );
        const run = await repo.start({
          nodes: [
            { name: 'a', runtime: 'x', metadata: {}, retry: { fail: { maxAttempts: 2 } } },
            { name: 'b', runtime: 'x', metadata: {}, retry: {} },
          ],
          edges: [{ source: 'a', destination: 'b' }],
        });
        const lease = await repo.grantLease(60_000);
        const claimAndFinish = async (node: string, conclusion: 'SUCCESS' | 'FAIL') => {
          const c = await repo.claim({ runId: run.id, node, leaseId: lease.id, agentId: 'up' });
          assert.ok(c, `${node} is claimable`);
          await repo.finish({
            runId: run.id,
            node,
            claimId: c.claimId,
            conclusion,
            output: new Uint8Array([1]),
          });
        };
        await claimAndFinish('a', 'FAIL');
        await claimAndFinish('a', 'SUCCESS');
        await claimAndFinish('b', 'SUCCESS');
        const done = await repo.inspect(run.id);
        assert.equal(done.status, 'COMPLETED');
        assert.equal(done.conclusion, 'SUCCESS');
        assert.deepEqual(
          done.nodes.map((n) => n.attempts.map((a) => a.conclusion)),
          [['FAIL', 'SUCCESS'], ['SUCCESS']],
        );
        assert.deepEqual([...done.nodes[1]!.inputs.a!], [1]);
      } finally {
        await repo.close();
      }
    } finally {
      await client.end();
      await dropSchema(schema);
    }
  });

  it('refuses a schema migrated by a newer adagio', async () => {
    const { schema, teardown } = await postgresRepository({ reaperIntervalMs: 0 });
    try {
      await sql(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES (9999, 'from the future')`);
      await assert.rejects(
        PostgresRepository.connect({ connectionString: POSTGRES_URL, schema }),
        (e: Error) => e instanceof UnavailableError && /version 9999, newer than this adagio/.test(e.message),
      );
    } finally {
      await teardown();
    }
  });

  it('keeps schemas apart, runs and notices alike', { timeout: 30_000 }, async () => {
    const one = await postgresRepository({ reaperIntervalMs: 0 });
    const two = await postgresRepository({ reaperIntervalMs: 0 });
    try {
      const ac = new AbortController();
      const seen: string[] = [];
      const sub = (async () => {
        for await (const e of two.repository.subscribe({ runtimes: ['x'], signal: ac.signal }))
          seen.push(e.runId);
      })();
      const r1 = await one.repository.start({
        nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
        edges: [],
      });
      const r2 = await two.repository.start({
        nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
        edges: [],
      });
      const deadline = Date.now() + 10_000;
      while (!seen.includes(r2.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      await sub;
      assert.ok(seen.includes(r2.id));
      assert.ok(!seen.includes(r1.id), "a schema's subscriber never sees another schema's runs");
      assert.equal((await one.repository.listRuns()).runs.length, 1);
      assert.equal((await two.repository.stats()).runCount, 1);
    } finally {
      await one.teardown();
      await two.teardown();
    }
  });

  it('merges search_path with options already in the connection string', async () => {
    const url = new URL(POSTGRES_URL);
    url.searchParams.set('options', '-c statement_timeout=5000');
    const { repository, teardown } = await postgresRepository({
      connectionString: url.toString(),
      reaperIntervalMs: 0,
    });
    try {
      const run = await repository.start({
        nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
        edges: [],
      });
      assert.equal((await repository.inspect(run.id)).id, run.id);
    } finally {
      await teardown();
    }
  });

  it('an unreachable server is UnavailableError naming the operation', { timeout: 30_000 }, async () => {
    const port = await freePort(); // nothing listens here
    const repo = new PostgresRepository({
      connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
      schema: uniqueSchema(),
      retryForMs: 300,
      reaperIntervalMs: 0,
    });
    try {
      await assert.rejects(
        repo.ping(),
        (e: Error) =>
          e instanceof UnavailableError &&
          /PostgreSQL/.test(e.message) &&
          /ECONNREFUSED|connect/.test(e.message),
      );
      await assert.rejects(repo.inspect('x'), UnavailableError);
    } finally {
      await repo.close();
    }
    await assert.rejects(
      PostgresRepository.connect({
        connectionString: `postgres://postgres@127.0.0.1:${port}/postgres`,
        retryForMs: 200,
      }),
      UnavailableError,
    );
  });

  it('rejects schema and channel names that are not plain identifiers', () => {
    assert.throws(
      () => new PostgresRepository({ connectionString: POSTGRES_URL, schema: 'bad; DROP TABLE x' }),
      InvalidArgumentError,
    );
    assert.throws(
      () => new PostgresRepository({ connectionString: POSTGRES_URL, schema: 'ok', notifyChannel: 'no"pe' }),
      InvalidArgumentError,
    );
  });

  it('rejects a catch-up limit that is not a whole number above 0, naming it', () => {
    for (const catchUpLimit of [0, -5, 2.5, Number.NaN])
      assert.throws(
        () => new PostgresRepository({ connectionString: POSTGRES_URL, schema: 'ok', catchUpLimit }),
        (e: Error) =>
          e instanceof InvalidArgumentError && /catchUpLimit must be a whole number > 0/.test(e.message),
        String(catchUpLimit),
      );
    // A good one is taken.
    void new PostgresRepository({ connectionString: POSTGRES_URL, schema: 'ok', catchUpLimit: 10 }).close();
  });
});
