import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import pg from 'pg';
import { PostgresRepository, type PostgresRepositoryOptions } from '../../src/backends/postgres/index.js';
import { freePort } from './ports.js';

export { freePort };

/**
 * PostgreSQL for tests (docs/design.md §5): ADAGIO_TEST_POSTGRES_URL when set,
 * else the local server. Each test gets its own schema and drops it. When no
 * server answers, tests fail with a message saying how to provide one: a
 * silently skipped suite would hide a broken backend.
 */
export const POSTGRES_URL =
  process.env.ADAGIO_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

let reachable: Promise<void> | undefined;

/** Resolves when the test server answers; otherwise rejects with instructions. */
export function requirePostgres(url = POSTGRES_URL): Promise<void> {
  if (url === POSTGRES_URL && reachable) return reachable;
  const check = (async () => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    try {
      await client.connect();
      await client.query('SELECT 1');
    } catch (e) {
      throw new Error(
        `PostgreSQL is required for these tests but ${redact(url)} is not reachable (${(e as Error).message}). ` +
          'Start PostgreSQL (e.g. `pg_ctlcluster 15 main start`) or set ADAGIO_TEST_POSTGRES_URL.',
      );
    } finally {
      await client.end().catch(() => {});
    }
  })();
  if (url === POSTGRES_URL) reachable = check;
  return check;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

let counter = 0;

/** A schema name no other test (or test process) uses. */
export function uniqueSchema(prefix = 'adagio_test'): string {
  const rand = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${process.pid}_${++counter}_${rand}`;
}

export async function dropSchema(schema: string, url = POSTGRES_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

/** A repository on a fresh schema; teardown closes it and drops the schema. */
export async function postgresRepository(
  options: Partial<PostgresRepositoryOptions> = {},
): Promise<{ repository: PostgresRepository; schema: string; teardown: () => Promise<void> }> {
  const url = options.connectionString ?? POSTGRES_URL;
  await requirePostgres(url);
  const schema = options.schema ?? uniqueSchema();
  const repository = await PostgresRepository.connect({
    reaperIntervalMs: 100,
    poolSize: 8,
    ...options,
    connectionString: url,
    schema,
  });
  return {
    repository,
    schema,
    teardown: async () => {
      await repository.close();
      await dropSchema(schema, url);
    },
  };
}

/** What postgresSuite gives a describe block's tests. */
export interface PostgresSuite {
  repo: PostgresRepository;
  schema: string;
  /** A plain connection beside the repository, for rows and functions the protocol does not show. */
  client: pg.Client;
}

/**
 * For a describe block whose tests share one store: a repository on a fresh
 * schema, migrated, and a plain client beside it, made before the block's
 * tests and closed (the schema dropped) after them. Its fields are set once
 * the block's `before` has run: read them inside tests.
 */
export function postgresSuite(options: Partial<PostgresRepositoryOptions> = {}): PostgresSuite {
  const suite = {} as PostgresSuite;
  let teardown: (() => Promise<void>) | undefined;
  before(async () => {
    const made = await postgresRepository(options);
    teardown = made.teardown;
    suite.repo = made.repository;
    suite.schema = made.schema;
    await made.repository.ping(); // migrates
    suite.client = new pg.Client({ connectionString: options.connectionString ?? POSTGRES_URL });
    await suite.client.connect();
  });
  after(async () => {
    await suite.client?.end();
    await teardown?.();
  });
  return suite;
}

/**
 * Moves the database clock the time rules read (adagio_now_ms(), migration 5)
 * to `offsetMs` ahead of now() in this repository's schema. Leases keep now().
 */
export async function movePostgresClock(
  repository: PostgresRepository,
  schema: string,
  offsetMs: number,
  url = POSTGRES_URL,
): Promise<void> {
  await repository.ping(); // the schema is migrated on first use
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(
      `CREATE OR REPLACE FUNCTION ${schema}.adagio_now_ms() RETURNS bigint LANGUAGE plpgsql STABLE AS $fn$
       BEGIN RETURN (extract(epoch FROM now()) * 1000)::bigint + ${Math.round(offsetMs)}; END $fn$`,
    );
  } finally {
    await client.end();
  }
}

const PG_BIN = '/usr/lib/postgresql/15/bin';

/**
 * A private PostgreSQL server on a temporary data directory and a free port,
 * for tests that restart or stop the server: the shared one is never touched.
 * initdb refuses to run as root, so the server runs as the `postgres` user
 * when we are root.
 */
export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  static async start(): Promise<PrivatePostgres> {
    const dir = mkdtempSync(join(tmpdir(), 'adagio-pg-'));
    const asRoot = process.getuid?.() === 0;
    if (asRoot) chownSync(dir, uidOf('postgres'), gidOf('postgres'));
    const server = new PrivatePostgres(dir, await freePort());
    server.exec('initdb', [
      '-D',
      join(dir, 'data'),
      '-U',
      'postgres',
      '-A',
      'trust',
      '--no-sync',
      '-E',
      'UTF8',
    ]);
    server.pgctl('start');
    await requirePostgres(server.url);
    return server;
  }

  /** Stops the server (fast shutdown: open connections are cut) and starts it again. */
  async restart(): Promise<void> {
    this.pgctl('restart');
    await requirePostgres(this.url);
  }

  stop(): void {
    this.pgctl('stop', true);
  }

  start(): void {
    this.pgctl('start');
  }

  destroy(): void {
    try {
      this.pgctl('stop', true);
    } catch {
      // already stopped
    }
    rmSync(this.dir, { recursive: true, force: true });
  }

  private pgctl(action: 'start' | 'stop' | 'restart', quiet = false): void {
    const args = ['-D', join(this.dir, 'data'), '-m', 'fast', '-w', '-t', '30', '-l', join(this.dir, 'log')];
    if (action !== 'stop')
      args.push(
        '-o',
        `-p ${this.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${this.dir} -c fsync=off -c max_connections=200`,
      );
    this.exec('pg_ctl', [action, ...args], quiet);
  }

  private exec(tool: string, args: string[], quiet = false): void {
    const bin = join(PG_BIN, tool);
    const asRoot = process.getuid?.() === 0;
    const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
    const r = spawnSync(cmd, argv as string[], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0 && !quiet)
      throw new Error(`${tool} ${args[0]} failed (${r.status}): ${r.stderr || r.stdout || r.error?.message}`);
  }
}

function uidOf(user: string): number {
  return Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
}

function gidOf(user: string): number {
  return Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
}
