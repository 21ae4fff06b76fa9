import type pg from 'pg';
import {
  CLAIM_AHEAD_MIGRATION,
  CLAIM_NODES_DELAYED_FUNCTION,
  CLAIM_NODES_FUNCTION,
  CLAIM_NODES_SET_MIGRATION,
  FAILED_ATTEMPTS_MIGRATION,
  FINISH_ATTEMPT_FUNCTION,
  FINISH_NODES_LINEAR_MIGRATION,
  FINISH_NODES_MIGRATION,
  FINISH_STREAMED_UNLOCKED_MIGRATION,
  LIVE_OUTPUT_MIGRATION,
  RUNS_HOT_MIGRATION,
  SCHEDULES_MIGRATION,
  SCHEMA_TABLES,
  TIMING_MIGRATION,
  TRIGGERS_MIGRATION,
  WORKFLOWS_MIGRATION,
} from './sql.js';

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
    sql: SCHEMA_TABLES,
  },
  {
    version: 2,
    name: 'finish_attempt: rules 4 and 5 in one statement',
    sql: FINISH_ATTEMPT_FUNCTION,
  },
  {
    version: 3,
    name: 'claim_nodes: a batch of claims with cached plans',
    sql: CLAIM_NODES_FUNCTION,
  },
  {
    version: 4,
    name: 'live output: what running attempts streamed; when runs finished',
    sql: LIVE_OUTPUT_MIGRATION,
  },
  {
    version: 5,
    name: 'time rules: retry delays (ready_at, backoff, finish_timed)',
    sql: TIMING_MIGRATION + CLAIM_NODES_DELAYED_FUNCTION,
  },
  {
    version: 6,
    name: 'trigger rules and retrying a run: upstream outcome counters, settle_dependents',
    sql: TRIGGERS_MIGRATION,
  },
  {
    version: 7,
    name: 'workflow definitions; run names, labels, params and request ids',
    sql: WORKFLOWS_MIGRATION,
  },
  {
    version: 8,
    name: 'schedules',
    sql: SCHEDULES_MIGRATION,
  },
  {
    version: 9,
    name: 'attempts_failed: the runs list names failed nodes',
    sql: FAILED_ATTEMPTS_MIGRATION,
  },
  {
    version: 10,
    name: 'finish_streamed: no extra locks when the attempt streamed nothing',
    sql: FINISH_STREAMED_UNLOCKED_MIGRATION,
  },
  {
    version: 11,
    name: 'claim_nodes: one statement per batch; the claimer reads attempts by (run_id, node)',
    sql: CLAIM_NODES_SET_MIGRATION,
  },
  {
    version: 12,
    name: 'finish_nodes: a batch of finishes in a few set-based statements, one notice per run',
    sql: FINISH_NODES_MIGRATION,
  },
  {
    version: 13,
    name: 'claim-ahead: release_claim (rule 20)',
    sql: CLAIM_AHEAD_MIGRATION,
  },
  {
    version: 14,
    name: 'row writes: runs and nodes filled to 70%; the deadline look-up names no column a conclusion writes',
    sql: RUNS_HOT_MIGRATION,
  },
  {
    version: 15,
    name: 'finish_nodes: no CTE joined to another, so a batch costs in proportion to its size',
    sql: FINISH_NODES_LINEAR_MIGRATION,
  },
];

export const COUNTER_SHARDS = 16;

/** Namespace of the advisory lock (first key); the second is the schema's hash. */
const LOCK_NAMESPACE = 0x41646167; // "Adag"

/**
 * Brings the schema up to date. Safe to call from many processes at once: the
 * advisory lock serialises them and later ones find nothing left to do.
 */
export async function migrate(
  client: pg.ClientBase,
  schema: string,
  /** Tests pass a prefix to build an older schema and upgrade it. */
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number> {
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
    const latest = migrations[migrations.length - 1]!.version;
    if (current > latest)
      throw new Error(
        `PostgreSQL schema "${schema}" is at version ${current}, newer than this adagio understands (${latest}); upgrade adagio`,
      );
    await client.query(`SET LOCAL search_path TO ${schema}`);
    for (const m of migrations) {
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
