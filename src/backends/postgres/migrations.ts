import type pg from 'pg';

/**
 * The PostgreSQL schema, as versioned migrations kept in TypeScript so the
 * build ships them. Each runs once, in order, inside the configured schema
 * (the session's search_path), under a transaction-scoped advisory lock so
 * several processes starting at once do not race. Never edit a released
 * migration: add a new one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'runs, nodes, attempts, leases, agents, counters',
    sql: `
-- One row per run. Ids are ULIDs compared bytewise ("C" collation).
-- remaining counts nodes not yet COMPLETED; the run concludes when it reaches 0.
-- Finishing transactions lock this row first, so they serialise per run and
-- never deadlock with each other or with cancel.
CREATE TABLE runs (
  id          text COLLATE "C" PRIMARY KEY,
  created_at  bigint  NOT NULL,
  edges       jsonb   NOT NULL,
  node_count  integer NOT NULL,
  remaining   integer NOT NULL,
  failed      boolean NOT NULL DEFAULT false,
  cancelled   boolean NOT NULL DEFAULT false,
  conclusion  text
);
-- Listing newest first and keyset paging: (created_at, id) < cursor.
CREATE INDEX runs_by_time ON runs (created_at, id);

-- One row per node. upstream/downstream are the node's direct neighbours, so a
-- transition reads and writes the node and its dependents only (rule 9).
CREATE TABLE nodes (
  run_id            text COLLATE "C" NOT NULL,
  name              text COLLATE "C" NOT NULL,
  idx               integer NOT NULL,
  runtime           text    NOT NULL,
  spec              jsonb   NOT NULL,
  upstream          text[]  NOT NULL,
  downstream        text[]  NOT NULL,
  status            text    NOT NULL,
  pending_upstream  integer NOT NULL,
  attempt_count     integer NOT NULL DEFAULT 0,
  fail_count        integer NOT NULL DEFAULT 0,
  error_count       integer NOT NULL DEFAULT 0,
  claim_id          text COLLATE "C",
  claim_agent       text,
  claim_metadata    jsonb,
  lease_id          text COLLATE "C",
  orphaned          boolean NOT NULL DEFAULT false,
  previous_claim_id text,
  started_at        bigint,
  finished_at       bigint,
  -- Bumped by every change: watchers skip notices about states they have already seen.
  version           integer NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, name)
);
-- The hot set: partial indexes hold unfinished nodes only, so claim, subscribe
-- and stats cost does not grow with stored history.
CREATE INDEX nodes_ready   ON nodes (runtime, run_id) WHERE status = 'READY';
CREATE INDEX nodes_running ON nodes (run_id) WHERE status = 'RUNNING';
CREATE INDEX nodes_waiting ON nodes (run_id) WHERE status = 'WAITING';

CREATE TABLE attempts (
  run_id      text COLLATE "C" NOT NULL,
  node        text COLLATE "C" NOT NULL,
  n           integer NOT NULL,
  conclusion  text    NOT NULL,
  metadata    jsonb   NOT NULL,
  output      bytea   NOT NULL,
  claim_id    text    NOT NULL,
  agent_id    text    NOT NULL,
  started_at  bigint,
  finished_at bigint  NOT NULL,
  PRIMARY KEY (run_id, node, n)
);

-- Lease expiry is judged by the database's clock (now()), never an agent's.
CREATE TABLE leases (
  id         text COLLATE "C" PRIMARY KEY,
  ttl_ms     integer     NOT NULL,
  expires_at timestamptz NOT NULL
);

CREATE TABLE agents (
  id         text PRIMARY KEY,
  lease_id   text COLLATE "C" NOT NULL,
  runtimes   jsonb  NOT NULL,
  hostname   text   NOT NULL,
  started_at bigint NOT NULL
);
CREATE INDEX agents_by_lease ON agents (lease_id);

-- Totals of stored runs and nodes, spread over shards so concurrent starts
-- do not queue on one row; stats() sums them.
CREATE TABLE counters (
  shard integer PRIMARY KEY,
  runs  bigint NOT NULL DEFAULT 0,
  nodes bigint NOT NULL DEFAULT 0
);
INSERT INTO counters (shard) SELECT generate_series(0, 15);
`,
  },
];

export const COUNTER_SHARDS = 16;

/** Namespace of the advisory lock (first key); the second is the schema's hash. */
const LOCK_NAMESPACE = 0x41646167; // "Adag"

/**
 * Brings the schema up to date. Safe to call from many processes at once: the
 * advisory lock serialises them and later ones find nothing left to do.
 */
export async function migrate(client: pg.ClientBase, schema: string): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_NAMESPACE, schema]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
         version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const { rows } = await client.query<{ v: number | null }>(
      `SELECT max(version) AS v FROM ${schema}.schema_migrations`,
    );
    const current = rows[0]?.v ?? 0;
    const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    if (current > latest)
      throw new Error(
        `PostgreSQL schema "${schema}" is at version ${current}, newer than this adagio understands (${latest}); upgrade adagio`,
      );
    await client.query(`SET LOCAL search_path TO ${schema}`);
    for (const m of MIGRATIONS) {
      if (m.version <= current) continue;
      await client.query(m.sql);
      await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        m.version,
        m.name,
      ]);
    }
    await client.query('COMMIT');
    return latest;
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
