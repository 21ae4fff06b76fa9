/**
 * A/B of PostgreSQL CPU per node (issue 18): one wide run against many
 * one-node runs, for several source trees in one process, interleaved, so a
 * loaded machine moves every variant alike. Not part of `npm run bench`.
 *
 *   git archive <base-commit> src | tar -x -C /tmp/base && ln -s $PWD/node_modules /tmp/base/
 *   nice -n 10 node --import tsx bench/pg-width-ab.ts base=/tmp/base new=$PWD -- wide:2000 narrow:2000
 *
 * SHAPE: wide:N (one run of N independent nodes), narrow:N (N one-node
 * runs) or dag:N (N runs of the 7-node DAG, 7N nodes), started before the
 * drain, which an AgentPool (16 slots, no-op runtime) does. Worker CPU: this process's cpuUsage over the drain. Server
 * CPU: the run time of the variant's PostgreSQL backends (found by
 * application_name in pg_stat_activity, read from /proc/<pid>/schedstat, so
 * the server must run on this machine). WAL: bytes the server wrote to its
 * write-ahead log over the drain, per node (the server's whole log, so
 * anything else writing meanwhile counts too: a steadier measure of the rows
 * a node costs than CPU time on a shared machine). STATS=1 also prints the functions'
 * times (with track_functions=pl in the URL's options) and the tables' row
 * counts. ROUNDS=n repeats and prints medians. AHEAD=n sets the pool's claimAhead.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { sevenNode } from './graphs.js';

const URL = process.env.ADAGIO_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
const variants = argv.slice(0, sep).map((a) => {
  const [name, dir] = a.split('=');
  return { name: name!, dir: dir! };
});
const shapes = argv.slice(sep + 1).map((s) => {
  const [kind, n] = s.split(':');
  return { kind: kind as 'wide' | 'narrow' | 'dag', n: Number(n) };
});
const rounds = Number(process.env.ROUNDS ?? 1);
const CONCURRENCY = 16;

const admin = new pg.Client({ connectionString: URL, application_name: 'bench-admin' });
await admin.connect();

/** The backend's run time so far, µs: schedstat counts nanoseconds where stat counts 10 ms ticks (a backend is one thread). */
function cpuOf(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
  } catch {
    return Number.NaN;
  }
}

class ServerCpu {
  private base = new Map<number, number>();
  private last = new Map<number, number>();
  /** The LISTEN connection's backend: how much of the server's CPU goes to delivering notices. */
  private listeners = new Set<number>();
  private timer?: NodeJS.Timeout;
  constructor(private readonly app: string) {}
  private async sample(baseline: boolean) {
    const { rows } = await admin.query<{ pid: number; listen: boolean }>(
      `SELECT pid, query LIKE 'LISTEN%' AS listen FROM pg_stat_activity WHERE application_name = $1`,
      [this.app],
    );
    for (const { pid, listen } of rows) {
      if (listen) this.listeners.add(pid);
      const c = cpuOf(pid);
      if (Number.isNaN(c)) continue;
      if (baseline) this.base.set(pid, c);
      else if (!this.base.has(pid)) this.base.set(pid, 0);
      this.last.set(pid, c);
    }
  }
  async start() {
    await this.sample(true);
    this.timer = setInterval(() => void this.sample(false), 200);
  }
  async stop(): Promise<{ total: number; listener: number }> {
    clearInterval(this.timer);
    await this.sample(false);
    let total = 0;
    let listener = 0;
    for (const [pid, c] of this.last) {
      total += c - (this.base.get(pid) ?? 0);
      if (this.listeners.has(pid)) listener += c - (this.base.get(pid) ?? 0);
    }
    return { total, listener };
  }
}

const results: Record<
  string,
  Record<string, { worker: number[]; server: number[]; rate: number[]; wal: number[] }>
> = {};

/** The server's WAL insert position, bytes. */
async function walPosition(): Promise<bigint> {
  const { rows } = await admin.query<{ lsn: string }>(
    `SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text AS lsn`,
  );
  return BigInt(rows[0]!.lsn.split('.')[0]!);
}

for (let round = 0; round < rounds; round++)
  for (const shape of shapes)
    for (const v of variants) {
      const { PostgresRepository } = await import(`${v.dir}/src/backends/postgres/index.ts`);
      const { AgentPool } = await import(`${v.dir}/src/agent/index.ts`);
      const { silentLogger } = await import(`${v.dir}/src/log.ts`);
      const app = `bw_${process.pid}_${v.name}`;
      const schema = `bw_${process.pid}_${v.name}`;
      await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      const url = `${URL}${URL.includes('?') ? '&' : '?'}application_name=${app}`;
      const repo = await PostgresRepository.connect({
        connectionString: url,
        schema,
        poolSize: CONCURRENCY + 4,
      });
      const noop = { name: 'noop', run: async () => ({ conclusion: 'SUCCESS' }) };
      const drain = async (expected: number, measure: boolean) => {
        const server = new ServerCpu(app);
        const pool = new AgentPool({
          repository: repo,
          runtimes: [noop],
          concurrency: CONCURRENCY,
          ...(process.env.AHEAD ? { claimAhead: Number(process.env.AHEAD) } : {}),
          logger: silentLogger,
        });
        if (measure) await server.start();
        const wal0 = await walPosition();
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        await pool.start();
        while (pool.counters.finished.SUCCESS < expected) await new Promise((r) => setTimeout(r, 2));
        const ms = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const wal = Number((await walPosition()) - wal0) / expected;
        const s = measure ? await server.stop() : { total: 0, listener: 0 };
        await pool.stop({ graceMs: 1000 });
        return {
          ms,
          worker: (cpu.user + cpu.system) / expected,
          server: s.total / expected,
          listener: s.listener / expected,
          wal,
        };
      };
      const startNarrow = async (n: number) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < n) {
              next++;
              await repo.start({
                nodes: [{ name: 'a', runtime: 'noop', metadata: {}, retry: {} }],
                edges: [],
              });
            }
          }),
        );
      };
      try {
        await startNarrow(200);
        await drain(200, false); // warm-up
        if (shape.kind === 'wide')
          await repo.start({
            nodes: Array.from({ length: shape.n }, (_, i) => ({
              name: `n${i}`,
              runtime: 'noop',
              metadata: {},
              retry: {},
            })),
            edges: [],
          });
        else if (shape.kind === 'dag') {
          let next = 0;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              while (next < shape.n) {
                next++;
                await repo.start(sevenNode('noop'));
              }
            }),
          );
        } else await startNarrow(shape.n);
        const nodes = shape.kind === 'dag' ? shape.n * 7 : shape.n;
        const r = await drain(nodes, true);
        if (process.env.STATS) {
          // Function times need track_functions=pl (ADAGIO_TEST_POSTGRES_URL=...?options=-c%20track_functions%3Dpl);
          // they are wall times, include the warm-up and may lag by a second.
          await new Promise((res) => setTimeout(res, 1500));
          const f = await admin.query(
            `SELECT funcname, calls, round(self_time::numeric * 1000 / $2) AS self_us_per_node,
               round(total_time::numeric * 1000 / $2) AS total_us_per_node
             FROM pg_stat_user_functions WHERE schemaname = $1 ORDER BY total_time DESC`,
            [schema, nodes],
          );
          console.table(f.rows);
          const t = await admin.query(
            `SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables
             WHERE schemaname = $1 ORDER BY relname`,
            [schema],
          );
          console.table(t.rows);
        }
        const key = `${shape.kind}:${shape.n}`;
        results[key] ??= {};
        const slot = results[key];
        slot[v.name] ??= { worker: [], server: [], rate: [], wal: [] };
        const rec = slot[v.name]!;
        rec.wal.push(r.wal);
        rec.worker.push(r.worker);
        rec.server.push(r.server);
        rec.rate.push((nodes / r.ms) * 1000);
        console.log(
          `${key} ${v.name}: ${((nodes / r.ms) * 1000).toFixed(0)} nodes/s, worker ${r.worker.toFixed(0)} µs, server ${r.server.toFixed(0)} µs per node (listener ${r.listener.toFixed(0)} µs), WAL ${r.wal.toFixed(0)} bytes per node`,
        );
      } finally {
        await repo.close();
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      }
    }

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log('\nmedians (nodes/s, worker µs, server µs, WAL bytes per node)');
for (const [key, byVariant] of Object.entries(results))
  for (const [name, r] of Object.entries(byVariant))
    console.log(
      `${key.padEnd(14)} ${name.padEnd(8)} ${median(r.rate).toFixed(0).padStart(6)} ${median(r.worker).toFixed(0).padStart(6)} ${median(r.server).toFixed(0).padStart(6)} ${median(r.wal).toFixed(0).padStart(6)}`,
    );
await admin.end();
