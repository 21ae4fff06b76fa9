/**
 * PostgreSQL server CPU of claim_nodes and finish_nodes over the 7-node DAG,
 * split into a fixed cost per call and a cost per node (issue 18). Not part
 * of `npm run bench`.
 *
 *   nice -n 10 node --import tsx bench/pg-calls.ts [RUNS_PER_CALL ...]   (default: 1 4 16)
 *
 * One connection drives the runs layer by layer (a and b, then c, d and f,
 * then e, then g), each layer of RUNS_PER_CALL runs claimed in one call and
 * finished in one call, as ClaimBatcher and FinishBatcher send them (the
 * same prepared statements; claims committed asynchronously as Db.fast does).
 * CPU: the backend's own run time from /proc/<pid>/schedstat (nanoseconds;
 * /proc/<pid>/stat counts 10 ms ticks), so the server must run on this
 * machine. The first round of each size warms the session and is not counted.
 * The fit: cost per node = fixed / (nodes per call) + marginal, least squares
 * over the sizes given.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PostgresRepository } from '../src/backends/postgres/index.js';
import { sevenNode } from './graphs.js';

const URL = process.env.ADAGIO_BENCH_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const SIZES = process.argv.slice(2).map(Number);
if (SIZES.length === 0) SIZES.push(1, 4, 16);
const NODES_PER_SIZE = 448; // 64 runs of 7 nodes
const LAYERS = [['a', 'b'], ['c', 'd', 'f'], ['e'], ['g']];
const schema = `bench_calls_${process.pid}`;

const admin = new pg.Client({ connectionString: URL });
await admin.connect();
const repo = await PostgresRepository.connect({ connectionString: URL, schema });
const runsNeeded = SIZES.reduce((n, per) => n + per + NODES_PER_SIZE / 7, 0);
const ids: string[] = [];
try {
  for (let i = 0; i < runsNeeded; i += 16)
    ids.push(
      ...(
        await Promise.all(
          Array.from({ length: Math.min(16, runsNeeded - i) }, () => repo.start(sevenNode('noop'))),
        )
      ).map((r) => r.id),
    );
  await admin.query(
    `INSERT INTO ${schema}.leases (id, ttl_ms, expires_at) VALUES ('L', 3600000, now() + interval '1 hour')`,
  );
  const c = new pg.Client({ connectionString: URL, options: `-c search_path=${schema}` });
  await c.connect();
  const pid: number = (await c.query('SELECT pg_backend_pid() AS p')).rows[0].p;
  const cpuUs = () => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
  const points: { perCall: number; claim: number; finish: number }[] = [];
  let next = 0;
  for (const per of SIZES) {
    let claim = 0;
    let finish = 0;
    let nodes = 0;
    let calls = 0;
    for (let round = 0; nodes < NODES_PER_SIZE; round++) {
      const runs = ids.slice(next, next + per);
      next += per;
      for (const layer of LAYERS) {
        const batch = runs.flatMap((run) => layer.map((node) => ({ run, node, claim: `c-${run}-${node}` })));
        await c.query('SET synchronous_commit = off');
        const t0 = cpuUs();
        await c.query({
          name: 'claim',
          text: 'SELECT * FROM claim_nodes($1, $2, $3, $4, $5, $6, $7, $8)',
          values: [
            batch.map((b) => b.run),
            batch.map((b) => b.node),
            batch.map((b) => b.claim),
            batch.map(() => 'agent'),
            batch.map(() => '{}'),
            batch.map(() => 'L'),
            batch.map(() => Date.now()),
            false,
          ],
        });
        const t1 = cpuUs();
        await c.query('SET synchronous_commit = on');
        const t1b = cpuUs();
        await c.query({
          name: 'finish',
          text: 'SELECT i, r FROM finish_nodes($1, $2, $3, $4, $5, $6, $7, $8, $9)',
          values: [
            batch.map((b) => b.run),
            batch.map((b) => b.node),
            batch.map((b) => b.claim),
            batch.map(() => 'SUCCESS'),
            batch.map(() => '{}'),
            batch.map(() => Buffer.from('ok')),
            batch.map(() => Date.now()),
            batch.map(() => null),
            false,
          ],
        });
        const t2 = cpuUs() - (t1b - t1);
        if (round === 0) continue; // warm-up
        claim += t1 - t0;
        finish += t2 - t1;
        nodes += batch.length;
        calls++;
      }
    }
    points.push({ perCall: nodes / calls, claim: claim / nodes, finish: finish / nodes });
    console.log(
      `${per} run(s) per call (${(nodes / calls).toFixed(1)} nodes): claim ${(claim / nodes).toFixed(0)} µs, finish ${(finish / nodes).toFixed(0)} µs per node`,
    );
  }
  await c.end();
  if (points.length > 1)
    for (const key of ['claim', 'finish'] as const) {
      // y = fixed * x + marginal, x = 1 / nodes per call.
      const xs = points.map((p) => 1 / p.perCall);
      const ys = points.map((p) => p[key]);
      const mx = xs.reduce((a, b) => a + b) / xs.length;
      const my = ys.reduce((a, b) => a + b) / ys.length;
      const fixed =
        xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
      console.log(
        `${key}: about ${fixed.toFixed(0)} µs per call + ${(my - fixed * mx).toFixed(0)} µs per node`,
      );
    }
} finally {
  await repo.close();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.end();
}
