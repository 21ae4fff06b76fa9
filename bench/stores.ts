import { connect } from 'node:net';
import pg from 'pg';
import { MemoryRepository } from '../src/backends/memory/index.js';
import type { Repository } from '../src/protocol/index.js';
import { dynamoDbRepository, sharedDynamoDb } from '../test/support/dynamodb.js';
import { etcdRepository, sharedEtcd } from '../test/support/etcd.js';
import { POSTGRES_URL, postgresRepository, requirePostgres } from '../test/support/postgres.js';
import { type CpuMeter, processMeter, processSetMeter } from './cpu.js';

/**
 * The stores the benchmarks run against, found or started as the tests do
 * (test/support): PostgreSQL and Redis on loopback (or the URLs in the
 * environment), etcd and DynamoDB Local started by this process. Each
 * measurement gets an empty namespace, so rounds do not see each other's rows.
 */

/** ADAGIO_BENCH_POSTGRES_URL, else the tests' server. */
export const BENCH_POSTGRES_URL = process.env.ADAGIO_BENCH_POSTGRES_URL || POSTGRES_URL;

/** ADAGIO_BENCH_REDIS_URL, else ADAGIO_TEST_REDIS_URL, else the local server. */
export const BENCH_REDIS_URL =
  process.env.ADAGIO_BENCH_REDIS_URL || process.env.ADAGIO_TEST_REDIS_URL || 'redis://127.0.0.1:6379';

export const STORE_KINDS = ['memory', 'etcd', 'postgres', 'dynamodb'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

export interface Store {
  readonly kind: StoreKind;
  /** The server's CPU; undefined when the store lives in this process (memory). */
  readonly cpu?: CpuMeter;
  /** A repository on an empty namespace (schema, key prefix, table); teardown drops it. */
  fresh(): Promise<{ repository: Repository; teardown(): Promise<void> }>;
  close(): Promise<void>;
}

export async function openStore(kind: StoreKind): Promise<Store> {
  switch (kind) {
    case 'memory':
      return {
        kind,
        fresh: async () => {
          const repository = new MemoryRepository();
          return { repository, teardown: () => repository.close() };
        },
        close: async () => {},
      };
    case 'postgres': {
      const db = await benchDatabase('adagio');
      return {
        kind,
        cpu: db.cpu,
        // Production defaults but for the pool: 16 slots and a few starters share it.
        fresh: () =>
          postgresRepository({ connectionString: db.url, poolSize: 20, reaperIntervalMs: undefined }),
        close: () => db.drop(),
      };
    }
    case 'etcd': {
      const cluster = await sharedEtcd(); // killed when this process exits
      return {
        kind,
        cpu: processMeter(cluster.members[0]?.pid),
        fresh: () => etcdRepository(),
        close: async () => {},
      };
    }
    case 'dynamodb': {
      const server = await sharedDynamoDb(); // killed when this process exits
      return {
        kind,
        cpu: processMeter(server.pid),
        fresh: () => dynamoDbRepository({ sweepIntervalMs: undefined }),
        close: async () => {},
      };
    }
  }
}

/**
 * A database of its own on the benchmark's PostgreSQL server (one per peer),
 * so the CPU of exactly its backends can be read (pg_stat_activity by
 * datname, then /proc) and everything goes with one DROP at the end.
 */
export async function benchDatabase(
  peer: string,
): Promise<{ url: string; cpu: CpuMeter; drop(): Promise<void> }> {
  await requirePostgres(BENCH_POSTGRES_URL);
  const name = `bench_${peer}_${process.pid}`;
  const admin = new pg.Client({ connectionString: BENCH_POSTGRES_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(BENCH_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    cpu: processSetMeter(async () => {
      const res = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [
        name,
      ]);
      return res.rows.map((r) => r.pid);
    }),
    drop: async () => {
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}

/** Resolves with host and port when Redis answers PING; otherwise rejects saying how to provide one. */
export async function requireRedis(url = BENCH_REDIS_URL): Promise<{ host: string; port: number }> {
  const u = new URL(url);
  const target = { host: u.hostname, port: Number(u.port || 6379) };
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = connect(target, () => socket.write('PING\r\n'));
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer within 5 s')));
    socket.once('data', (d) => {
      resolve(d.toString());
      socket.end();
    });
    socket.once('error', reject);
  }).catch((e: Error) => `-${e.message}`);
  if (!reply.startsWith('+PONG'))
    throw new Error(
      `Redis is required for the peer benchmark but ${url} did not answer PING (${reply.trim()}). ` +
        'Start redis-server or set ADAGIO_BENCH_REDIS_URL.',
    );
  return target;
}
