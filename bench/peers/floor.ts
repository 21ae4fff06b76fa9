import pg from 'pg';
import { benchDatabase } from '../stores.js';
import { type Contender, countdown, measure, type Peer, SLOTS } from './peer.js';

/**
 * Not a peer but a measure of what bounds Adagio on PostgreSQL (issue 18):
 * the rows a one-node run's attempt must leave durable, written by hand in
 * the fewest statements and batched as graphile-worker's fast mode batches
 * (BATCH nodes claimed per statement into a local queue, completions of a
 * tick finished in one statement), with none of the engine around them.
 *
 * What every design that keeps Adagio's records writes per node, and this does:
 * - the claim: the node row, READY → RUNNING, with its claim id, lease and
 *   start, taken only under a live lease (rules 2 and 3);
 * - the finish, fenced by that claim (rule 4): the attempt row (the run's
 *   history: conclusion, output, claim, agent, times), the node row → COMPLETED,
 *   and the run row's countdown and conclusion (rule 7).
 * graphile-worker's job is one row, updated at the fetch and deleted at the
 * completion. What this leaves out, the engine does besides: rule 5's retry
 * decision, dependents' triggers, notices for live watchers, streamed output,
 * admission, inputs for the claimer. So its jobs/s is an upper bound for any
 * implementation of these records in this database, and its CPU per job a
 * lower one.
 */
const BATCH = 500;

const SCHEMA = `
CREATE TABLE leases (id text PRIMARY KEY, expires_at timestamptz NOT NULL);
CREATE TABLE runs (
  id text COLLATE "C" PRIMARY KEY, remaining integer NOT NULL, conclusion text, finished_at bigint
);
CREATE TABLE nodes (
  run_id text COLLATE "C", name text COLLATE "C", status text NOT NULL, spec jsonb NOT NULL,
  attempt_count integer NOT NULL DEFAULT 0, claim_id text, lease_id text, started_at bigint, finished_at bigint,
  PRIMARY KEY (run_id, name)
);
-- The READY queue in claim order: the one index the claim needs.
CREATE INDEX nodes_ready ON nodes (run_id) WHERE status = 'READY';
CREATE TABLE attempts (
  run_id text COLLATE "C", node text COLLATE "C", n integer, conclusion text NOT NULL, output bytea NOT NULL,
  claim_id text NOT NULL, agent_id text NOT NULL, started_at bigint, finished_at bigint NOT NULL,
  PRIMARY KEY (run_id, node, n)
)`;

/** Claims up to $3 READY nodes, oldest run first, if lease $1 is live. */
const CLAIM = `
UPDATE nodes n SET status = 'RUNNING', claim_id = gen_random_uuid()::text, lease_id = $1, started_at = $2
FROM (SELECT run_id, name FROM nodes WHERE status = 'READY' ORDER BY run_id LIMIT $3 FOR UPDATE SKIP LOCKED) s
WHERE n.run_id = s.run_id AND n.name = s.name AND EXISTS (SELECT 1 FROM leases WHERE id = $1 AND expires_at > now())
RETURNING n.run_id, n.name, n.spec, n.claim_id`;

/** Finishes the attempts of claims ($1, $2, $3) as SUCCESS at $4: only a node still RUNNING under that claim. */
const FINISH = `
WITH x AS (
  -- The keys' collation, so the join reaches each node by its primary key.
  SELECT run COLLATE "C" AS run, node COLLATE "C" AS node, claim
  FROM unnest($1::text[], $2::text[], $3::text[]) AS x(run, node, claim)
),
n AS (
  UPDATE nodes n SET status = 'COMPLETED', attempt_count = n.attempt_count + 1, finished_at = $4,
    claim_id = NULL, lease_id = NULL
  -- coalesce: a test the planner cannot estimate, so stale statistics (all READY at the last ANALYZE) cannot
  -- make it scan every RUNNING node per finish rather than reach each by its key (Adagio's functions do the same).
  FROM x WHERE n.run_id = x.run AND n.name = x.node AND coalesce(n.status = 'RUNNING' AND n.claim_id = x.claim, false)
  RETURNING n.run_id, n.name, n.attempt_count, n.started_at, x.claim
), a AS (
  INSERT INTO attempts (run_id, node, n, conclusion, output, claim_id, agent_id, started_at, finished_at)
  SELECT run_id, name, attempt_count, 'SUCCESS', '\\x', claim, 'floor', started_at, $4 FROM n
), c AS (SELECT run_id, count(*)::int AS done FROM n GROUP BY run_id)
UPDATE runs r SET remaining = r.remaining - c.done,
  conclusion = CASE WHEN r.remaining = c.done THEN 'SUCCESS' END,
  finished_at = CASE WHEN r.remaining = c.done THEN $4 END
FROM c WHERE r.id = c.run_id`;

export async function rowsFloor(): Promise<Peer> {
  const db = await benchDatabase('floor');
  // Every row by its key, as Adagio's functions plan them: a seq scan of the nodes per finish would make this a
  // measure of the planner's guess about an unnest's size.
  const sql = new pg.Pool({
    connectionString: db.url,
    max: 4,
    options: '-c enable_seqscan=off -c enable_bitmapscan=off -c enable_hashjoin=off -c enable_mergejoin=off',
  });
  sql.on('error', () => {});
  await sql.query(SCHEMA);

  /** Drains the READY nodes with SLOTS no-op slots fed by a local queue that one claimer keeps filled. */
  const drain = async (jobs: number) => {
    const finished = countdown(jobs, `the rows floor draining ${jobs} jobs`);
    const queue: { run_id: string; name: string; claim_id: string }[] = [];
    const done: { run: string; node: string; claim: string }[] = [];
    let flushing: Promise<void> | undefined;
    let fetching = false;
    let idle: (() => void)[] = [];
    let stopped = false;
    let fail!: (e: unknown) => void;
    const failed = new Promise<never>((_, reject) => {
      fail = reject;
    });

    const flush = async (): Promise<void> => {
      while (done.length > 0) {
        const batch = done.splice(0);
        const res = await sql.query(FINISH, [
          batch.map((d) => d.run),
          batch.map((d) => d.node),
          batch.map((d) => d.claim),
          Date.now(),
        ]);
        if (res.rowCount !== batch.length)
          throw new Error(`${batch.length - (res.rowCount ?? 0)} finishes refused`);
        finished.add(batch.length);
      }
      flushing = undefined;
    };
    const complete = (run: string, node: string, claim: string) => {
      done.push({ run, node, claim });
      // Completions gathered over one tick (graphile-worker's completeJobBatchDelay 0), one statement in flight.
      flushing ??= new Promise<void>((r) => setImmediate(r)).then(flush).catch(fail);
    };
    const fetch = async () => {
      if (fetching || stopped) return;
      fetching = true;
      try {
        const res = await sql.query(CLAIM, ['floor', Date.now(), BATCH - queue.length]);
        queue.push(...res.rows);
      } catch (e) {
        fail(e);
      } finally {
        fetching = false;
      }
      const waiting = idle;
      idle = [];
      for (const w of waiting) w();
    };
    const slot = async () => {
      while (!stopped) {
        const job = queue.shift();
        if (!job) {
          await new Promise<void>((r) => {
            idle.push(r);
            void fetch();
          });
          continue;
        }
        // Refill at half, as a local queue does, so slots do not wait for the claim's round trip.
        if (queue.length < BATCH / 2) void fetch();
        await Promise.resolve(); // the no-op job
        complete(job.run_id, job.name, job.claim_id);
      }
    };

    await sql.query(`INSERT INTO leases VALUES ('floor', now() + interval '1 hour')`);
    const slots = Array.from({ length: SLOTS }, slot);
    try {
      await Promise.race([finished.all(), failed]);
    } finally {
      stopped = true;
      for (const w of idle) w();
      await Promise.all(slots);
      await flushing;
    }
  };

  const contender: Contender = {
    name: 'rows floor: a one-node run’s rows by hand, batched as graphile-worker fast',
    backlog: async (jobs) => {
      await sql.query('TRUNCATE leases, runs, nodes, attempts');
      await sql.query(
        `WITH g AS (SELECT lpad(i::text, 10, '0') AS id FROM generate_series(1, $1::int) i),
           r AS (INSERT INTO runs (id, remaining) SELECT id, 1 FROM g)
         INSERT INTO nodes (run_id, name, status, spec) SELECT id, 'n0', 'READY', '{"runtime": "noop"}' FROM g`,
        [jobs],
      );
      await sql.query('ANALYZE runs, nodes, attempts');
      return measure(jobs, db.cpu, () => drain(jobs));
    },
  };
  return {
    contenders: [contender],
    close: async () => {
      await sql.end();
      await db.drop();
    },
  };
}
