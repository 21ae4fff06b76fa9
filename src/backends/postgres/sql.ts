/**
 * PostgreSQL's SQL in one place, each statement a named, documented constant:
 * the migrations' text (migrations.ts applies them in order: tables,
 * finish_attempt, claim_nodes, …; claims and finishes today are migrations
 * 11 and 12's claim_nodes and finish_nodes, at the end), then the statements
 * the backend runs, by the module that runs them. A TypeScript module rather than .sql files because
 * the package runs from src (tsx) and from dist (tsc), and tsc copies no .sql.
 *
 * The migrations' text is the released migrations' byte for byte: never edit
 * one, add a constant and a migration. schema.sql beside this file is a
 * normalised pg_dump of the schema they build, kept true by
 * test/postgres/schema.test.ts. Still written where they are used: the
 * statements built from column lists or optional filters (inspect and
 * listRuns in reads.ts, the subscribe catch-up in streams.ts) and those of
 * transitions.ts (cancel, orphaning, claim diagnosis).
 */

/**
 * Migration 1: the tables. runs (one row per run; finishes lock it first),
 * nodes (one row per node, with the pending-upstream counter and the claim),
 * attempts, leases (expiry judged by the server's clock), agents, and the
 * sharded counters that make stats cheap.
 */
export const SCHEMA_TABLES = `
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
`;

/**
 * Migration 2: `finish_attempt(...)`, rules 4 and 5 in one server-side call.
 * The fence: the node's row is locked (after the run's) and must be RUNNING
 * under the caller's claim id and not orphaned. Returns the notice to publish,
 * {"recorded": true} for a repeat of a committed finish, or why it refused.
 */
export const FINISH_ATTEMPT_FUNCTION = `
-- Finishing an attempt (rules 4 and 5) as one server-side call: one round trip
-- instead of seven, and the run's row lock, which serialises finishes within a
-- run, is held for the function's run time only, never across client round
-- trips. Returns {"notice": …} (what changed, for NOTIFY), {"recorded": true}
-- when a repeated call finds its attempt already stored, or the reason it
-- refused: {"missing": "run"|"node"} or {"conflict": true, …}.
CREATE FUNCTION finish_attempt(p_run text, p_node text, p_claim text, p_conclusion text,
                               p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_run record;
  v_node record;
  v_max integer;
  v_retry boolean := false;
  v_status text;
  v_changed jsonb;
  v_notice jsonb;
  v_extra jsonb;
  v_ready jsonb;
  v_unreached integer;
  v_completed integer := 0;
  v_failed boolean := false;
  v_remaining integer;
BEGIN
  -- Locking order: the run, then its nodes (as cancel does); claims lock one node row only.
  SELECT node_count, remaining, failed, cancelled INTO v_run FROM runs WHERE id = p_run FOR NO KEY UPDATE;
  IF NOT FOUND THEN RETURN jsonb_build_object('missing', 'run'); END IF;
  SELECT runtime, spec, downstream, status, claim_id, claim_agent, orphaned, attempt_count, fail_count,
         error_count, started_at, version
    INTO v_node FROM nodes WHERE run_id = p_run AND name = p_node FOR UPDATE;
  IF NOT FOUND THEN RETURN jsonb_build_object('missing', 'node'); END IF;

  -- Rule 4: only the node's live claim may finish it.
  IF v_node.status <> 'RUNNING' OR v_node.claim_id IS DISTINCT FROM p_claim OR v_node.orphaned THEN
    IF p_repeat AND EXISTS (SELECT 1 FROM attempts WHERE run_id = p_run AND node = p_node
                              AND claim_id = p_claim AND conclusion = p_conclusion) THEN
      RETURN jsonb_build_object('recorded', true);
    END IF;
    RETURN jsonb_build_object('conflict', true, 'status', v_node.status, 'orphaned', v_node.orphaned,
                              'cancelled', v_run.cancelled);
  END IF;

  -- Rule 5: retry[conclusion].maxAttempts counts attempts of that conclusion, this one included.
  IF p_conclusion IN ('FAIL', 'ERROR') THEN
    v_max := (v_node.spec -> 'retry' -> lower(p_conclusion) ->> 'maxAttempts')::integer;
    v_retry := v_max IS NOT NULL AND
      (CASE p_conclusion WHEN 'FAIL' THEN v_node.fail_count ELSE v_node.error_count END) + 1 < v_max;
  END IF;
  v_status := CASE WHEN v_retry THEN 'READY' ELSE 'COMPLETED' END;

  INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
  VALUES (p_run, p_node, v_node.attempt_count + 1, p_conclusion, p_metadata, p_output, p_claim,
          coalesce(v_node.claim_agent, ''), v_node.started_at, p_now);
  UPDATE nodes SET status = v_status, attempt_count = attempt_count + 1,
    fail_count = fail_count + (p_conclusion = 'FAIL')::int, error_count = error_count + (p_conclusion = 'ERROR')::int,
    claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
    previous_claim_id = NULL, finished_at = CASE WHEN v_status = 'COMPLETED' THEN p_now END,
    version = version + 1
  WHERE run_id = p_run AND name = p_node;

  v_changed := jsonb_build_array(jsonb_build_object('n', p_node, 'v', v_node.version + 1, 's', v_status,
    'a', v_node.attempt_count + 1, 'st', v_node.started_at, 'ft', CASE WHEN v_retry THEN NULL ELSE p_now END));
  v_notice := jsonb_build_object('r', p_run);

  IF v_retry THEN
    v_notice := v_notice || jsonb_build_object('rd', jsonb_build_array(jsonb_build_array(p_node, v_node.runtime)));
  ELSIF p_conclusion = 'SUCCESS' THEN
    v_completed := 1;
    IF cardinality(v_node.downstream) > 0 THEN
      -- Direct dependents only (rule 9); one whose last upstream just succeeded becomes READY.
      WITH d AS (
        UPDATE nodes SET pending_upstream = pending_upstream - 1,
          status = CASE WHEN pending_upstream = 1 AND status = 'WAITING' THEN 'READY' ELSE status END,
          version = version + 1
        WHERE run_id = p_run AND name = ANY(v_node.downstream)
        RETURNING name, runtime, status, version
      )
      SELECT coalesce(jsonb_agg(jsonb_build_object('n', name, 'v', version, 's', 'READY', 'a', 0)), '[]'),
             coalesce(jsonb_agg(jsonb_build_array(name, runtime)), '[]')
        INTO v_extra, v_ready
        FROM d WHERE status = 'READY';
      v_changed := v_changed || v_extra;
      IF jsonb_array_length(v_ready) > 0 THEN
        v_notice := v_notice || jsonb_build_object('rd', v_ready);
      END IF;
    END IF;
  ELSE
    -- Final failure: everything downstream not completed yet completes with no attempt (unreached).
    -- The walk stops at completed nodes, whose own downstream completed with them.
    v_failed := true;
    WITH RECURSIVE walk(name) AS (
      SELECT unnest(v_node.downstream)
      UNION
      SELECT d.name FROM walk w
        JOIN nodes n ON n.run_id = p_run AND n.name = w.name AND n.status <> 'COMPLETED'
        CROSS JOIN LATERAL unnest(n.downstream) AS d(name)
    ), u AS (
      UPDATE nodes SET status = 'COMPLETED', finished_at = p_now, version = version + 1
      WHERE run_id = p_run AND name IN (SELECT name FROM walk) AND status <> 'COMPLETED'
      RETURNING name, version
    )
    SELECT count(*)::int,
           coalesce(jsonb_agg(jsonb_build_object('n', name, 'v', version, 's', 'COMPLETED', 'a', 0, 'ft', p_now)), '[]')
      INTO v_unreached, v_extra
      FROM u;
    v_completed := 1 + v_unreached;
    v_changed := v_changed || v_extra;
  END IF;

  -- Rule 7: the run's status after this transition.
  v_remaining := v_run.remaining - v_completed;
  IF v_remaining = 0 THEN
    v_notice := v_notice || jsonb_build_object('rs', 'COMPLETED', 'rc',
      CASE WHEN v_run.cancelled THEN 'CANCELLED' WHEN v_run.failed OR v_failed THEN 'FAIL' ELSE 'SUCCESS' END);
  ELSIF v_remaining < v_run.node_count THEN
    v_notice := v_notice || jsonb_build_object('rs', 'RUNNING');
  ELSE
    -- Back to READY with nothing completed yet: the run is RUNNING only if another node is.
    v_notice := v_notice || jsonb_build_object('rs', CASE WHEN EXISTS (
      SELECT 1 FROM nodes WHERE run_id = p_run AND status = 'RUNNING') THEN 'RUNNING' ELSE 'WAITING' END);
  END IF;
  IF v_completed > 0 THEN
    UPDATE runs SET remaining = v_remaining, failed = failed OR v_failed, conclusion = v_notice ->> 'rc'
    WHERE id = p_run;
  END IF;
  RETURN jsonb_build_object('notice', v_notice || jsonb_build_object('ch', v_changed));
END
$fn$;
`;

/**
 * Migration 3: `claim_nodes(...)`, rule 2 (and rule 3's recovery) for a batch
 * of claims, as a function so its per-node statements keep cached plans.
 */
export const CLAIM_NODES_FUNCTION = `
-- Rule 2 (and rule 3's recovery) for a batch of claims, one row per call that
-- claimed (i: its 1-based position). A function rather than one big statement
-- because PL/pgSQL caches the plans of its simple per-node statements, where
-- the equivalent multi-CTE statement was planned anew on every call and the
-- planning cost more than the claims. Calls run in (run, node) order so batches
-- of different processes lock rows in one order. The UPDATE matches a row only
-- while it is claimable; a concurrent claimer waits on the row lock and then
-- re-checks the new version, so exactly one wins. p_repeat: a repeated try may
-- find the node RUNNING under its own claim id (the earlier try committed) and
-- then returns it unchanged.
CREATE FUNCTION claim_nodes(p_runs text[], p_nodes text[], p_claims text[], p_agents text[],
                            p_metadata jsonb[], p_leases text[], p_now bigint[], p_repeat boolean)
RETURNS TABLE (i integer, run_id text, name text, idx integer, runtime text, spec jsonb, upstream text[],
               status text, attempt_count integer, claim_id text, claim_agent text, claim_metadata jsonb,
               orphaned boolean, previous_claim_id text, started_at bigint, finished_at bigint, version integer,
               attempts_json json)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
  k integer;
BEGIN
  FOR k IN SELECT x.k FROM unnest(p_runs, p_nodes) WITH ORDINALITY AS x(r, n, k)
           ORDER BY x.r COLLATE "C", x.n COLLATE "C" LOOP
    CONTINUE WHEN NOT EXISTS (SELECT 1 FROM leases l WHERE l.id = p_leases[k] AND l.expires_at > now());
    RETURN QUERY
    WITH c AS (
      UPDATE nodes n SET
        status = 'RUNNING',
        previous_claim_id = CASE WHEN n.claim_id = p_claims[k] THEN n.previous_claim_id
          WHEN n.status = 'RUNNING' THEN n.claim_id END,
        started_at = CASE WHEN n.status = 'READY' THEN p_now[k] ELSE n.started_at END,
        finished_at = CASE WHEN n.status = 'READY' THEN NULL ELSE n.finished_at END,
        claim_id = p_claims[k], claim_agent = p_agents[k], claim_metadata = p_metadata[k], lease_id = p_leases[k],
        orphaned = false, version = n.version + 1
      WHERE n.run_id = p_runs[k] AND n.name = p_nodes[k]
        AND (n.status = 'READY' OR (n.status = 'RUNNING' AND n.orphaned)
             OR (p_repeat AND n.status = 'RUNNING' AND n.claim_id = p_claims[k]))
      RETURNING n.*
    )
    SELECT k, c.run_id::text, c.name::text, c.idx, c.runtime, c.spec, c.upstream, c.status, c.attempt_count,
      c.claim_id::text, c.claim_agent, c.claim_metadata, c.orphaned, c.previous_claim_id, c.started_at,
      c.finished_at, c.version,
      -- The attempts the claimer needs (its own, and its upstream nodes' for inputs), in the same round trip.
      (SELECT coalesce(json_agg(json_build_object('node', a.node, 'n', a.n, 'conclusion', a.conclusion,
                'metadata', a.metadata, 'output', encode(a.output, 'base64'), 'claim_id', a.claim_id,
                'agent_id', a.agent_id, 'started_at', a.started_at, 'finished_at', a.finished_at)), '[]')
       FROM attempts a
       WHERE a.run_id = c.run_id AND (a.node = ANY(c.upstream) OR (a.node = c.name AND c.attempt_count > 0)))
    FROM c;
  END LOOP;
END
$fn$;
`;

/** Migration 4: live output (live_outputs, attempt_output, finish_streamed) and runs.finished_at. */
export const LIVE_OUTPUT_MIGRATION = `
-- When the run completed (ms): set by the transaction that completes it.
ALTER TABLE runs ADD COLUMN finished_at bigint;

-- The output a running attempt streamed so far (appendOutput), one row per
-- RUNNING node that streamed, apart from the hot nodes rows. attempt is the
-- number the attempt will record; next_seq the seq its next chunk carries.
-- An orphan's recovery keeps the row (the lost attempt's output survives);
-- finish_streamed and cancel move it into the recorded attempt and delete it.
CREATE TABLE live_outputs (
  run_id   text COLLATE "C" NOT NULL,
  node     text COLLATE "C" NOT NULL,
  attempt  integer NOT NULL,
  next_seq integer NOT NULL,
  output   bytea   NOT NULL,
  PRIMARY KEY (run_id, node)
);

-- model/limits.ts attemptOutput in SQL: the streamed output, then the finish
-- output within the 1 MiB cap, ending with the truncation marker when cut
-- (p_extra arrives already cut to the cap by the caller).
CREATE FUNCTION attempt_output(p_live bytea, p_extra bytea) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  v_marker bytea := convert_to(E'\\n…[output truncated by adagio]', 'UTF8');
  v_room integer := 1048576 - length(v_marker);
BEGIN
  IF p_live IS NULL OR length(p_live) = 0 THEN RETURN p_extra; END IF;
  IF length(p_live) > v_room OR length(p_extra) = 0 THEN RETURN p_live; END IF;
  IF length(p_live) + length(p_extra) <= v_room THEN RETURN p_live || p_extra; END IF;
  RETURN p_live || substring(p_extra FROM 1 FOR v_room - length(p_live)) || v_marker;
END
$fn$;

-- finish_attempt (migration 2) with the streamed output in front of the
-- finish output, and the run's finished_at once this finish completes it. Locks as finish_attempt does (the run, then the node), so no
-- append slips in between reading the streamed output and recording it.
CREATE FUNCTION finish_streamed(p_run text, p_node text, p_claim text, p_conclusion text,
                                p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_live bytea;
  v_result jsonb;
BEGIN
  PERFORM 1 FROM runs WHERE id = p_run FOR NO KEY UPDATE;
  PERFORM 1 FROM nodes WHERE run_id = p_run AND name = p_node FOR UPDATE;
  SELECT lo.output INTO v_live FROM live_outputs lo JOIN nodes n ON n.run_id = lo.run_id AND n.name = lo.node
    WHERE lo.run_id = p_run AND lo.node = p_node AND n.claim_id = p_claim AND lo.attempt = n.attempt_count + 1;
  v_result := finish_attempt(p_run, p_node, p_claim, p_conclusion, p_metadata,
                             attempt_output(v_live, p_output), p_now, p_repeat);
  IF v_result ? 'notice' THEN
    DELETE FROM live_outputs WHERE run_id = p_run AND node = p_node;
    IF v_result -> 'notice' ->> 'rs' = 'COMPLETED' THEN
      UPDATE runs SET finished_at = p_now WHERE id = p_run AND finished_at IS NULL;
    END IF;
  END IF;
  RETURN v_result;
END
$fn$;
`;

/**
 * Migration 5: time rules (5's retry delay, 11-13). runs.deadline_at; nodes.timeout_ms; nodes.ready_at (a READY
 * node is claimable from then, ms by adagio_now_ms()) and nodes.backoff (the
 * spec's backoffs in ms, model/rules.ts nodeBackoffMs); retry_delay_ms
 * (model/rules.ts retryDelayMs in SQL); finish_timed (finish_streamed, then
 * the retry's delay); and CLAIM_NODES_DELAYED_FUNCTION after it.
 */
export const TIMING_MIGRATION = `
-- The database's clock in ms, the one every time rule is judged by. A function
-- so that tests can move it (CREATE OR REPLACE with an offset): plpgsql, so no
-- plan inlines it and a replacement takes effect at the next call.
CREATE FUNCTION adagio_now_ms() RETURNS bigint LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN (extract(epoch FROM now()) * 1000)::bigint;
END
$fn$;

ALTER TABLE nodes ADD COLUMN ready_at bigint;
ALTER TABLE nodes ADD COLUMN backoff jsonb;
-- When the run's deadline passes (rule 13), ms; the sweeper cancels open runs past it, TIMED_OUT.
ALTER TABLE runs ADD COLUMN deadline_at bigint;
CREATE INDEX runs_deadlines ON runs (deadline_at) WHERE conclusion IS NULL AND deadline_at IS NOT NULL;
-- The node's timeout in ms (rule 11), set at start; the sweeper ends attempts past started_at + timeout_ms.
ALTER TABLE nodes ADD COLUMN timeout_ms bigint;
CREATE INDEX nodes_timed ON nodes ((started_at + timeout_ms)) WHERE status = 'RUNNING' AND timeout_ms IS NOT NULL;
-- The sweeper's look-up of delayed retries now due: READY nodes with a delay only.
CREATE INDEX nodes_delayed ON nodes (ready_at) WHERE status = 'READY' AND ready_at IS NOT NULL;

-- model/rules.ts retryDelayMs: min(max, a week, i * f^(retry - 1)), spread by
-- up to ±j of itself. p_backoff is nodeBackoffMs's entry for the conclusion.
CREATE FUNCTION retry_delay_ms(p_backoff jsonb, p_retry integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
  v_base double precision;
BEGIN
  IF p_backoff IS NULL OR jsonb_typeof(p_backoff) <> 'object' OR (p_backoff ->> 'i')::double precision <= 0 THEN
    RETURN 0;
  END IF;
  -- A growth past e^700 saturates at the cap instead of overflowing power().
  v_base := least(coalesce((p_backoff ->> 'm')::double precision, 604800000), 604800000,
    (p_backoff ->> 'i')::double precision * CASE
      WHEN greatest(0, p_retry - 1) * ln((p_backoff ->> 'f')::double precision) > 700 THEN 'Infinity'::double precision
      ELSE power((p_backoff ->> 'f')::double precision, greatest(0, p_retry - 1)) END);
  RETURN greatest(0, floor(v_base * (1 + (p_backoff ->> 'j')::double precision * (2 * random() - 1))))::bigint;
END
$fn$;

-- finish_streamed (migration 4), then rule 5's delay: a node sent back to
-- READY by a FAIL or ERROR whose retry has a backoff is claimable only from
-- ready_at, so it leaves the notice's READY list (the sweeper announces it
-- when due) and its change carries "na", when it is due.
CREATE FUNCTION finish_timed(p_run text, p_node text, p_claim text, p_conclusion text,
                             p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_result jsonb;
  v_node record;
  v_delay bigint;
  v_at bigint;
BEGIN
  v_result := finish_streamed(p_run, p_node, p_claim, p_conclusion, p_metadata, p_output, p_now, p_repeat);
  IF p_conclusion NOT IN ('FAIL', 'ERROR') OR NOT coalesce(v_result -> 'notice' ? 'rd', false) THEN
    RETURN v_result;
  END IF;
  -- Only the node's own retry waits (READY again after its FAIL or ERROR): dependents made READY by
  -- their triggers after a failure for good (rule 14) are claimable at once. A retry's READY list is
  -- the node alone (finish_attempt settles dependents only when the node completes).
  SELECT status, backoff, fail_count, error_count INTO v_node FROM nodes WHERE run_id = p_run AND name = p_node;
  IF v_node.status <> 'READY' THEN
    RETURN v_result;
  END IF;
  v_delay := retry_delay_ms(v_node.backoff -> lower(p_conclusion),
    CASE p_conclusion WHEN 'FAIL' THEN v_node.fail_count ELSE v_node.error_count END);
  IF v_delay <= 0 THEN
    UPDATE nodes SET ready_at = NULL WHERE run_id = p_run AND name = p_node AND ready_at IS NOT NULL;
    RETURN v_result;
  END IF;
  v_at := adagio_now_ms() + v_delay;
  UPDATE nodes SET ready_at = v_at WHERE run_id = p_run AND name = p_node;
  RETURN jsonb_set(v_result #- '{notice,rd}', '{notice,ch,0,na}', to_jsonb(v_at));
END
$fn$;

`;

/** Rewrites `text`'s one occurrence of `from` into `to`; throws at load if the released text does not hold it. */
function rewriteOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  if (at < 0 || text.indexOf(from, at + 1) >= 0)
    throw new Error(`migration text: expected one ${JSON.stringify(from)}`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

/**
 * Migration 5's claim_nodes: migration 3's text (released, never edited)
 * with one change, derived rather than copied so the two cannot drift: a
 * READY node waiting out its retry delay (ready_at still ahead by the
 * database's clock) is not claimable yet (rule 5).
 */
export const CLAIM_NODES_DELAYED_FUNCTION = rewriteOnce(
  rewriteOnce(CLAIM_NODES_FUNCTION, 'CREATE FUNCTION claim_nodes', 'CREATE OR REPLACE FUNCTION claim_nodes'),
  "AND (n.status = 'READY' OR (n.status = 'RUNNING' AND n.orphaned)",
  "AND ((n.status = 'READY' AND (n.ready_at IS NULL OR n.ready_at <= adagio_now_ms()))\n             OR (n.status = 'RUNNING' AND n.orphaned)",
);

/**
 * Migration 6: trigger rules (rule 14) and retrying a run (rule 15). Nodes
 * count their upstream nodes that completed without success (failed apart),
 * beside pending_upstream; trigger_decision is model/rules.ts triggerDecision
 * in SQL (held to it by test/postgres/finish-rules.test.ts); settle_dependents
 * lets a completed node's dependents judge it, walking on below those that go
 * unreached; finish_attempt is replaced to call it.
 */
export const TRIGGERS_MIGRATION = `
ALTER TABLE nodes ADD COLUMN failed_upstream integer NOT NULL DEFAULT 0;
-- Upstream nodes completed with neither success nor failure (unreached, cancelled).
ALTER TABLE nodes ADD COLUMN other_upstream integer NOT NULL DEFAULT 0;
-- Attempts recorded before the run's latest retry: the retry budgets count those after.
ALTER TABLE nodes ADD COLUMN attempts_before_retry integer NOT NULL DEFAULT 0;

CREATE FUNCTION trigger_holds(p_rule text, p_total integer, p_succeeded integer, p_failed integer)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE coalesce(nullif(p_rule, ''), 'all_success')
    WHEN 'all_success' THEN p_succeeded = p_total
    WHEN 'all_done' THEN true
    WHEN 'all_failed' THEN p_failed = p_total
    WHEN 'one_failed' THEN p_failed > 0
    WHEN 'one_success' THEN p_succeeded > 0
    WHEN 'none_failed' THEN p_failed = 0
  END
$fn$;

-- READY, WAIT or UNREACHED: judged once every upstream completed, or at once
-- when no outcome of the open ones could make the rule hold.
CREATE FUNCTION trigger_decision(p_rule text, p_total integer, p_completed integer, p_succeeded integer,
                                 p_failed integer)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE
    WHEN p_completed = p_total THEN
      CASE WHEN trigger_holds(p_rule, p_total, p_succeeded, p_failed) THEN 'READY' ELSE 'UNREACHED' END
    WHEN trigger_holds(p_rule, p_total, p_succeeded + p_total - p_completed, p_failed)
      OR trigger_holds(p_rule, p_total, p_succeeded, p_failed + p_total - p_completed) THEN 'WAIT'
    ELSE 'UNREACHED'
  END
$fn$;

-- The WAITING dependents of p_node (which completed: p_outcome succeeded,
-- failed or neither) count it in and their triggers decide; those that go
-- unreached pass it on, level by level. Direct dependents per level only
-- (rule 9). Returns {"ch": node changes, "rd": [[name, runtime]] now READY,
-- "c": nodes completed}.
CREATE FUNCTION settle_dependents(p_run text, p_node text, p_outcome text, p_now bigint)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_frontier text[] := ARRAY[p_node];
  v_outcome text := p_outcome;
  v_rows jsonb;
  v_next text[];
  v_rec record;
  v_version integer;
  v_changed jsonb := '[]';
  v_ready jsonb := '[]';
  v_completed integer := 0;
BEGIN
  WHILE cardinality(v_frontier) > 0 LOOP
    WITH src AS (
      SELECT unnest(downstream) AS d FROM nodes WHERE run_id = p_run AND name = ANY(v_frontier)
    ), cnt AS (
      SELECT d, count(*)::int AS k FROM src GROUP BY d
    ), u AS (
      UPDATE nodes n SET
        pending_upstream = n.pending_upstream - CASE WHEN v_outcome = 'succeeded' THEN c.k ELSE 0 END,
        failed_upstream = n.failed_upstream + CASE WHEN v_outcome = 'failed' THEN c.k ELSE 0 END,
        other_upstream = n.other_upstream + CASE WHEN v_outcome = 'neither' THEN c.k ELSE 0 END
      FROM cnt c WHERE n.run_id = p_run AND n.name = c.d AND n.status = 'WAITING'
      RETURNING n.name, n.runtime, n.attempt_count,
        trigger_decision(n.spec ->> 'trigger', cardinality(n.upstream),
          cardinality(n.upstream) - n.pending_upstream + n.failed_upstream + n.other_upstream,
          cardinality(n.upstream) - n.pending_upstream, n.failed_upstream) AS decision
    )
    SELECT coalesce(jsonb_agg(to_jsonb(u)), '[]') INTO v_rows FROM u;
    v_next := '{}';
    FOR v_rec IN SELECT * FROM jsonb_to_recordset(v_rows)
                   AS x(name text, runtime text, attempt_count integer, decision text) LOOP
      IF v_rec.decision = 'READY' THEN
        UPDATE nodes SET status = 'READY', version = version + 1
          WHERE run_id = p_run AND name = v_rec.name RETURNING version INTO v_version;
        v_changed := v_changed || jsonb_build_object('n', v_rec.name, 'v', v_version, 's', 'READY',
          'a', v_rec.attempt_count);
        v_ready := v_ready || jsonb_build_array(jsonb_build_array(v_rec.name, v_rec.runtime));
      ELSIF v_rec.decision = 'UNREACHED' THEN
        UPDATE nodes SET status = 'COMPLETED', finished_at = p_now, version = version + 1
          WHERE run_id = p_run AND name = v_rec.name RETURNING version INTO v_version;
        v_changed := v_changed || jsonb_build_object('n', v_rec.name, 'v', v_version, 's', 'COMPLETED',
          'a', v_rec.attempt_count, 'ft', p_now);
        v_completed := v_completed + 1;
        v_next := v_next || v_rec.name;
      END IF;
    END LOOP;
    v_frontier := v_next;
    v_outcome := 'neither';
  END LOOP;
  RETURN jsonb_build_object('ch', v_changed, 'rd', v_ready, 'c', v_completed);
END
$fn$;

CREATE OR REPLACE FUNCTION finish_attempt(p_run text, p_node text, p_claim text, p_conclusion text,
                               p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_run record;
  v_node record;
  v_max integer;
  v_retry boolean := false;
  v_status text;
  v_changed jsonb;
  v_notice jsonb;
  v_extra jsonb;
  v_settled jsonb;
  v_completed integer := 0;
  v_failed boolean := false;
  v_remaining integer;
BEGIN
  -- Locking order: the run, then its nodes (as cancel does); claims lock one node row only.
  SELECT node_count, remaining, failed, cancelled INTO v_run FROM runs WHERE id = p_run FOR NO KEY UPDATE;
  IF NOT FOUND THEN RETURN jsonb_build_object('missing', 'run'); END IF;
  SELECT runtime, spec, downstream, status, claim_id, claim_agent, orphaned, attempt_count, fail_count,
         error_count, started_at, version
    INTO v_node FROM nodes WHERE run_id = p_run AND name = p_node FOR UPDATE;
  IF NOT FOUND THEN RETURN jsonb_build_object('missing', 'node'); END IF;

  -- Rule 4: only the node's live claim may finish it.
  IF v_node.status <> 'RUNNING' OR v_node.claim_id IS DISTINCT FROM p_claim OR v_node.orphaned THEN
    IF p_repeat AND EXISTS (SELECT 1 FROM attempts WHERE run_id = p_run AND node = p_node
                              AND claim_id = p_claim AND conclusion = p_conclusion) THEN
      RETURN jsonb_build_object('recorded', true);
    END IF;
    RETURN jsonb_build_object('conflict', true, 'status', v_node.status, 'orphaned', v_node.orphaned,
                              'cancelled', v_run.cancelled);
  END IF;

  -- Rule 5: retry[conclusion].maxAttempts counts attempts of that conclusion, this one included.
  IF p_conclusion IN ('FAIL', 'ERROR') THEN
    v_max := (v_node.spec -> 'retry' -> lower(p_conclusion) ->> 'maxAttempts')::integer;
    v_retry := v_max IS NOT NULL AND
      (CASE p_conclusion WHEN 'FAIL' THEN v_node.fail_count ELSE v_node.error_count END) + 1 < v_max;
  END IF;
  v_status := CASE WHEN v_retry THEN 'READY' ELSE 'COMPLETED' END;

  INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
  VALUES (p_run, p_node, v_node.attempt_count + 1, p_conclusion, p_metadata, p_output, p_claim,
          coalesce(v_node.claim_agent, ''), v_node.started_at, p_now);
  UPDATE nodes SET status = v_status, attempt_count = attempt_count + 1,
    fail_count = fail_count + (p_conclusion = 'FAIL')::int, error_count = error_count + (p_conclusion = 'ERROR')::int,
    claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
    previous_claim_id = NULL, finished_at = CASE WHEN v_status = 'COMPLETED' THEN p_now END,
    version = version + 1
  WHERE run_id = p_run AND name = p_node;

  v_changed := jsonb_build_array(jsonb_build_object('n', p_node, 'v', v_node.version + 1, 's', v_status,
    'a', v_node.attempt_count + 1, 'st', v_node.started_at, 'ft', CASE WHEN v_retry THEN NULL ELSE p_now END));
  v_notice := jsonb_build_object('r', p_run);

  IF v_retry THEN
    v_notice := v_notice || jsonb_build_object('rd', jsonb_build_array(jsonb_build_array(p_node, v_node.runtime)));
  ELSE
    -- Completed (succeeded, or failed for good): its dependents' triggers judge it (rule 14).
    v_completed := 1;
    v_failed := p_conclusion <> 'SUCCESS';
    IF cardinality(v_node.downstream) > 0 THEN
      v_settled := settle_dependents(p_run, p_node,
        CASE WHEN p_conclusion = 'SUCCESS' THEN 'succeeded' ELSE 'failed' END, p_now);
      v_changed := v_changed || (v_settled -> 'ch');
      IF jsonb_array_length(v_settled -> 'rd') > 0 THEN
        v_notice := v_notice || jsonb_build_object('rd', v_settled -> 'rd');
      END IF;
      v_completed := v_completed + (v_settled ->> 'c')::int;
    END IF;
  END IF;

  -- Rule 7: the run's status after this transition.
  v_remaining := v_run.remaining - v_completed;
  IF v_remaining = 0 THEN
    v_notice := v_notice || jsonb_build_object('rs', 'COMPLETED', 'rc',
      CASE WHEN v_run.cancelled THEN 'CANCELLED' WHEN v_run.failed OR v_failed THEN 'FAIL' ELSE 'SUCCESS' END);
  ELSIF v_remaining < v_run.node_count THEN
    v_notice := v_notice || jsonb_build_object('rs', 'RUNNING');
  ELSE
    -- Back to READY with nothing completed yet: the run is RUNNING only if another node is.
    v_notice := v_notice || jsonb_build_object('rs', CASE WHEN EXISTS (
      SELECT 1 FROM nodes WHERE run_id = p_run AND status = 'RUNNING') THEN 'RUNNING' ELSE 'WAITING' END);
  END IF;
  IF v_completed > 0 THEN
    UPDATE runs SET remaining = v_remaining, failed = failed OR v_failed, conclusion = v_notice ->> 'rc'
    WHERE id = p_run;
  END IF;
  RETURN jsonb_build_object('notice', v_notice || jsonb_build_object('ch', v_changed));
END
$fn$;
`;

/**
 * Migration 10: finish_streamed locks the run and the node once (in
 * finish_attempt) when the attempt streamed nothing, the common case: the
 * extra locks and read of migration 4 cost every finish ~10% of the server's
 * CPU (bench). Same answers as migration 4's.
 */
export const FINISH_STREAMED_UNLOCKED_MIGRATION = `
-- Whether the attempt streamed is read before any lock. When a live_outputs
-- row is there, migration 4's path (lock, read, record, delete). When none is,
-- finish_attempt records the finish output and locks the node as it does; an
-- append that committed between the read and that lock (it holds the node's
-- lock until it commits, so it has committed by then) is found afterwards and
-- put in front of the recorded output, as migration 4 would have.
CREATE OR REPLACE FUNCTION finish_streamed(p_run text, p_node text, p_claim text, p_conclusion text,
                                           p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_live bytea;
  v_attempt integer;
  v_result jsonb;
BEGIN
  PERFORM 1 FROM live_outputs WHERE run_id = p_run AND node = p_node;
  IF FOUND THEN
    PERFORM 1 FROM runs WHERE id = p_run FOR NO KEY UPDATE;
    PERFORM 1 FROM nodes WHERE run_id = p_run AND name = p_node FOR UPDATE;
    SELECT lo.output INTO v_live FROM live_outputs lo JOIN nodes n ON n.run_id = lo.run_id AND n.name = lo.node
      WHERE lo.run_id = p_run AND lo.node = p_node AND n.claim_id = p_claim AND lo.attempt = n.attempt_count + 1;
    v_result := finish_attempt(p_run, p_node, p_claim, p_conclusion, p_metadata,
                               attempt_output(v_live, p_output), p_now, p_repeat);
    IF v_result ? 'notice' THEN
      DELETE FROM live_outputs WHERE run_id = p_run AND node = p_node;
    END IF;
  ELSE
    v_result := finish_attempt(p_run, p_node, p_claim, p_conclusion, p_metadata, p_output, p_now, p_repeat);
    IF v_result ? 'notice' THEN
      -- One probe in the common case; a raced append's row names the attempt it streamed for,
      -- which is the one just recorded when it carries this claim.
      DELETE FROM live_outputs WHERE run_id = p_run AND node = p_node RETURNING output, attempt INTO v_live, v_attempt;
      IF FOUND THEN
        UPDATE attempts SET output = attempt_output(v_live, p_output)
          WHERE run_id = p_run AND node = p_node AND n = v_attempt AND claim_id = p_claim;
      END IF;
    END IF;
  END IF;
  IF v_result -> 'notice' ->> 'rs' = 'COMPLETED' THEN
    UPDATE runs SET finished_at = p_now WHERE id = p_run AND finished_at IS NULL;
  END IF;
  RETURN v_result;
END
$fn$;
`;

/**
 * Migration 7: workflow definitions and run identity (rules 16, 17). Each
 * workflow version is an immutable row; a run records its name, labels,
 * workflow, params and request id; the request id is unique while its run is
 * kept (the row goes with the run), which makes a repeated start find the
 * first one's run atomically.
 */
export const WORKFLOWS_MIGRATION = `
CREATE TABLE workflows (
  name         text COLLATE "C" NOT NULL,
  version      integer NOT NULL,
  spec         jsonb   NOT NULL,
  description  text    NOT NULL,
  params       jsonb   NOT NULL,
  -- sha256 of the normalised content: a put equal to the latest version returns it.
  content_hash text    NOT NULL,
  created_at   bigint  NOT NULL,
  PRIMARY KEY (name, version)
);

ALTER TABLE runs
  ADD COLUMN name             text,
  ADD COLUMN labels           jsonb,
  ADD COLUMN workflow         text COLLATE "C",
  ADD COLUMN workflow_version integer,
  ADD COLUMN params           jsonb,
  ADD COLUMN request_id       text COLLATE "C";
-- A start with a request id inserts ON CONFLICT DO NOTHING: a duplicate finds this one's run.
CREATE UNIQUE INDEX runs_by_request ON runs (request_id) WHERE request_id IS NOT NULL;
-- Lists filtered by workflow, newest first.
CREATE INDEX runs_by_workflow ON runs (workflow, created_at, id) WHERE workflow IS NOT NULL;
-- Lists filtered by labels (labels @> '{"k": "v"}').
CREATE INDEX runs_by_labels ON runs USING gin (labels jsonb_path_ops) WHERE labels IS NOT NULL;
`;

// ---- claims (claims.ts)

/**
 * Migration 9: failed attempts by run, so the runs list names a run's failed
 * nodes (rule 19) by reading its failed attempts, not all of them.
 */
export const FAILED_ATTEMPTS_MIGRATION = `
CREATE INDEX attempts_failed ON attempts (run_id) WHERE conclusion IN ('FAIL', 'ERROR');
`;

/**
 * Rule 19 for the runs list: per run in $1, the first $2 names (byte order)
 * of nodes that failed for good (completed, last attempt FAIL or ERROR, made
 * since the node was last put back by a retry) and
 * how many there are. Drives from the attempts_failed index.
 */
export const FAILED_NODES = `SELECT run_id, node, total FROM (
  SELECT a.run_id, a.node, count(*) OVER (PARTITION BY a.run_id)::int AS total,
         row_number() OVER (PARTITION BY a.run_id ORDER BY a.node) AS rn
  FROM attempts a
  JOIN nodes n ON n.run_id = a.run_id AND n.name = a.node AND n.attempt_count = a.n AND n.status = 'COMPLETED'
  -- After the run's latest retry of the node: one put back that then completed unreached has not failed again.
    AND a.n > n.attempts_before_retry
  WHERE a.run_id = ANY($1) AND a.conclusion IN ('FAIL', 'ERROR')
) f WHERE rn <= $2 ORDER BY run_id, node`;

/** A batch of claims: one call of claim_nodes, prepared as adagio_claim_nodes; $8 says the batch is a repeat. */
export const CLAIM_NODES = 'SELECT * FROM claim_nodes($1, $2, $3, $4, $5, $6, $7, $8)';

// ---- finishes (finishes.ts)

/** A batch of finishes: one call of finish_nodes (migration 12), prepared as adagio_finish_nodes; $8 the reported starts (rule 20, NULL: none), $9 says the batch is a repeat. */
export const FINISH_NODES = 'SELECT i, r FROM finish_nodes($1, $2, $3, $4, $5, $6, $7, $8, $9)';

// ---- starts (starts.ts)

/** A batch of starts: the runs (an id already stored is skipped; $7 their identities, $8 their deadlines), their nodes from one JSON array, and one counter shard ($6) moved by what was inserted. Prepared as adagio_start. */
export const START_RUNS = `WITH r AS (
           INSERT INTO runs (id, created_at, edges, node_count, remaining,
                             name, labels, workflow, workflow_version, params, request_id, deadline_at,
                             deadline_open)
           SELECT x.id, x.created_at, x.edges, x.node_count, x.node_count,
                  x.ident->>'name', x.ident->'labels', x.ident->>'workflow',
                  (x.ident->>'workflowVersion')::int, x.ident->'params', x.ident->>'requestId', x.deadline_at,
                  x.deadline_at
           FROM unnest($1::text[], $2::bigint[], $3::jsonb[], $4::int[], $7::jsonb[], $8::bigint[])
             AS x(id, created_at, edges, node_count, ident, deadline_at)
           -- Any unique key: the id (a retry after a lost reply) or the request id (rule 17).
           ON CONFLICT DO NOTHING RETURNING id, node_count
         ), n AS (
           INSERT INTO nodes (run_id, name, idx, runtime, spec, upstream, downstream, status, pending_upstream, backoff,
                              timeout_ms)
           SELECT y.run_id, y.name, y.idx, y.runtime, y.spec, y.upstream, y.downstream, y.status, y.pending, y.backoff,
             y.timeout_ms
           FROM jsonb_to_recordset($5::jsonb) AS y(run_id text, name text, idx int, runtime text, spec jsonb,
             upstream text[], downstream text[], status text, pending int, backoff jsonb, timeout_ms bigint)
           JOIN r ON r.id = y.run_id
         ), c AS (
           UPDATE counters SET runs = counters.runs + t.n_runs, nodes = counters.nodes + t.n_nodes
           FROM (SELECT count(*) AS n_runs, coalesce(sum(node_count), 0) AS n_nodes FROM r) t
           WHERE shard = $6 AND t.n_runs > 0
         )
         SELECT count(*) FROM r`;

// ---- notices (notices.ts)

/**
 * Wake-ups: one NOTIFY per payload on channel $1, all in one statement (prepared as adagio_notify_lines).
 * $2 holds the payloads one per line: they are JSON, which never holds a raw line break, so nothing needs
 * escaping (a text[] literal escapes every quote of every payload: a tenth of an agent's allocations).
 */
export const NOTIFY_MANY = `SELECT pg_notify($1, payload) FROM unnest(string_to_array($2, E'\\n')) AS payload`;

// ---- leases and agents (leases.ts); expiry is judged by the server's clock (now())

/** A new lease of $2 ms from now. */
export const GRANT_LEASE = `INSERT INTO leases (id, ttl_ms, expires_at) VALUES ($1, $2::int, now() + $2::int * interval '1 millisecond')
       ON CONFLICT (id) DO NOTHING`;

/** Extends a lease that has not lapsed; no row changed means it had. */
export const KEEP_LEASE_ALIVE = `UPDATE leases SET expires_at = now() + ttl_ms * interval '1 millisecond'
       WHERE id = $1 AND expires_at > now()`;

/** Ends a lease and deregisters its agents. */
export const REVOKE_LEASE = `WITH l AS (DELETE FROM leases WHERE id = $1)
       DELETE FROM agents WHERE lease_id = $1`;

/** Whether a lease still holds a claim not yet orphaned. */
export const LEASE_HOLDS_CLAIMS = `SELECT 1 FROM nodes WHERE status = 'RUNNING' AND NOT orphaned AND lease_id = $1 LIMIT 1`;

/** Registers (or re-registers) an agent under a live lease; no row means the lease lapsed. */
export const REGISTER_AGENT = `INSERT INTO agents (id, lease_id, runtimes, hostname, started_at)
       SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM leases WHERE id = $2 AND expires_at > now())
       ON CONFLICT (id) DO UPDATE SET lease_id = excluded.lease_id, runtimes = excluded.runtimes,
         hostname = excluded.hostname, started_at = excluded.started_at
       RETURNING id, runtimes, hostname, started_at`;

/** Removes one agent. */
export const DEREGISTER_AGENT = 'DELETE FROM agents WHERE id = $1';

/** Live agents: those whose lease has not lapsed, even before the reaper runs. */
export const LIST_AGENTS = `SELECT a.id, a.runtimes, a.hostname, a.started_at FROM agents a
       JOIN leases l ON l.id = a.lease_id AND l.expires_at > now()
       ORDER BY a.id`;

/** The reaper: deletes lapsed leases and the agents of any lease that is gone. */
export const REAP_LEASES = `WITH l AS (DELETE FROM leases WHERE expires_at <= now() RETURNING id)
     DELETE FROM agents WHERE lease_id IN (SELECT id FROM l) OR lease_id NOT IN (SELECT id FROM leases)`;

// ---- time rules (timing.ts), judged by the database's clock (adagio_now_ms())

/** Rule 5's delay over: READY nodes whose retry is due become claimable; returns them for the notices. */
export const RELEASE_DUE_RETRIES = `UPDATE nodes SET ready_at = NULL, version = version + 1
       WHERE status = 'READY' AND ready_at IS NOT NULL AND ready_at <= adagio_now_ms()
       RETURNING run_id, name, runtime, version, attempt_count`;

/** Rule 11: attempts past their node's timeout (not orphaned: their recovery records the ERROR), for the sweeper to end. */
export const TIMED_OUT_ATTEMPTS = `SELECT run_id, name, claim_id, spec FROM nodes
       WHERE status = 'RUNNING' AND timeout_ms IS NOT NULL AND NOT orphaned
         AND started_at + timeout_ms <= adagio_now_ms()
       LIMIT 500`;

/**
 * Rule 13: open runs past their deadline, for the sweeper to cancel
 * TIMED_OUT. runs_open_deadlines (migration 14) lists a run from its start
 * until the sweep after its deadline: concluding a run leaves it there, so
 * that a conclusion writes no indexed column (its update can be HOT). So the
 * same statement drops the runs that concluded before their deadline passed,
 * which keeps what the look-up scans to the runs still open (the SELECT reads
 * the snapshot before that UPDATE, and skips concluded runs anyway). The
 * UPDATE's repeated conclusion test is what a concurrent retry (RETRY_RUN)
 * is re-checked by.
 */
export const RUNS_PAST_DEADLINE = `WITH forgotten AS (
         UPDATE runs SET deadline_open = NULL
         WHERE id IN (SELECT id FROM runs
                      WHERE deadline_open IS NOT NULL AND deadline_open <= adagio_now_ms() AND conclusion IS NOT NULL
                      LIMIT 1000)
           AND conclusion IS NOT NULL
       )
       SELECT id FROM runs
       WHERE deadline_open IS NOT NULL AND deadline_open <= adagio_now_ms() AND conclusion IS NULL
       LIMIT 100`;

// ---- reads (reads.ts)

/** Whether any node of run $1 is RUNNING (inspect of some nodes, to tell RUNNING from WAITING). */
export const RUN_HAS_RUNNING_NODE = `SELECT 1 FROM nodes WHERE run_id = $1 AND status = 'RUNNING' LIMIT 1`;

/** Totals from the sharded counters; open nodes counted by status (partial indexes keep these small). */
export const STATS = `SELECT (SELECT coalesce(sum(runs), 0) FROM counters) AS runs,
            (SELECT coalesce(sum(nodes), 0) FROM counters) AS nodes,
            (SELECT count(*) FROM nodes WHERE status = 'WAITING') AS w,
            (SELECT count(*) FROM nodes WHERE status = 'READY') AS r,
            (SELECT count(*) FROM nodes WHERE status = 'RUNNING') AS ru`;

/** Claims given back (rule 20), in (run, node) order so run locks are taken in one order: each claim's 1-based position and release_claim's notice, or NULL when the claim no longer holds. */
export const RELEASE_CLAIMS = `SELECT x.i::int AS i, release_claim(x.run, x.node, x.claim) AS notice
       FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(run, node, claim, i)
       ORDER BY x.run COLLATE "C", x.node COLLATE "C"`;

/** For each (run, node, claim id): whether the node is RUNNING under that claim and not orphaned, in the order asked (prepared as adagio_claims_held). */
export const CLAIMS_HELD = `SELECT coalesce(n.status = 'RUNNING' AND NOT n.orphaned AND n.claim_id = x.claim, false) AS held
       FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS x(run, node, claim, i)
       LEFT JOIN nodes n ON n.run_id = x.run AND n.name = x.node
       ORDER BY x.i`;

/** The run a start with request id $1 created, while it is kept. */
export const RUN_BY_REQUEST = 'SELECT id FROM runs WHERE request_id = $1';

// ---- workflows (workflows.ts)

/** Serialises puts of one workflow name (transaction-scoped; namespace 16 = rule 16). */
export const LOCK_WORKFLOW = 'SELECT pg_advisory_xact_lock(16, hashtext($1))';

export const LATEST_WORKFLOW = `SELECT version, content_hash FROM workflows WHERE name = $1 ORDER BY version DESC LIMIT 1`;

export const INSERT_WORKFLOW = `INSERT INTO workflows (name, version, spec, description, params, content_hash, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`;

const WORKFLOW_COLUMNS = 'name, version, spec, description, params, created_at';

/** Version $2, or the latest when $2 is null. */
export const GET_WORKFLOW = `SELECT ${WORKFLOW_COLUMNS} FROM workflows WHERE name = $1 AND ($2::int IS NULL OR version = $2)
       ORDER BY version DESC LIMIT 1`;

export const WORKFLOW_VERSIONS = `SELECT ${WORKFLOW_COLUMNS} FROM workflows WHERE name = $1 ORDER BY version DESC`;

/** Each name's latest version. */
export const LIST_WORKFLOWS = `SELECT DISTINCT ON (name) ${WORKFLOW_COLUMNS} FROM workflows ORDER BY name, version DESC`;

export const DELETE_WORKFLOW = 'DELETE FROM workflows WHERE name = $1';

// ---- retention (repository.ts)

/** Retention: up to 500 completed runs created before $1 with their nodes and attempts, the counters moved by what went; returns how many. */
export const DELETE_COMPLETED_RUNS = `WITH d AS (
             DELETE FROM runs WHERE id IN (
               SELECT id FROM runs WHERE created_at < $1 AND conclusion IS NOT NULL LIMIT 500)
               -- Checked again on the row itself: a run a retry reopened while this waited for its lock stays
               -- (the subquery's answer is from before the wait).
               AND conclusion IS NOT NULL
             RETURNING id, node_count
           ), n AS (DELETE FROM nodes WHERE run_id IN (SELECT id FROM d)),
           a AS (DELETE FROM attempts WHERE run_id IN (SELECT id FROM d)),
           c AS (UPDATE counters SET runs = runs - (SELECT count(*) FROM d),
                   nodes = nodes - (SELECT coalesce(sum(node_count), 0) FROM d)
                 WHERE shard = 0 AND EXISTS (SELECT 1 FROM d))
           SELECT count(*)::int AS n FROM d`;

/** A round trip. */
export const PING = 'SELECT 1';

// ---- retry (resume.ts), rule 15

/** The run a retry judges, locked (as finishes lock it) so nothing else changes it meanwhile. */
export const RETRY_LOCK_RUN = `SELECT remaining, conclusion FROM runs WHERE id = $1 FOR NO KEY UPDATE`;

/** Every node of the run with what planRetry needs: its spec, status and last attempt's conclusion. */
/** What tells a stale upstream SUCCESS (rows.ts staleUpstream) of the named nodes. */
export const UPSTREAM_RETRY_COUNTS = `SELECT name, attempt_count, attempts_before_retry FROM nodes
       WHERE run_id = $1 AND name = ANY($2)`;

export const RETRY_READ_NODES = `SELECT n.name, n.spec, n.status, n.upstream, n.downstream, n.attempt_count,
         n.attempts_before_retry,
         (SELECT a.conclusion FROM attempts a WHERE a.run_id = n.run_id AND a.node = n.name AND a.n = n.attempt_count)
           AS last
       FROM nodes n WHERE n.run_id = $1 ORDER BY n.idx FOR UPDATE`;

/** The plan's nodes put back: status, upstream counters, a fresh retry budget, no retry delay (rule 5); attempts stay. */
export const RETRY_PUT_BACK = `UPDATE nodes n SET status = x.status, pending_upstream = x.pending, ready_at = NULL,
         failed_upstream = x.failed, other_upstream = x.other, fail_count = 0, error_count = 0,
         attempts_before_retry = x.before, claim_id = NULL, claim_agent = NULL, claim_metadata = NULL,
         lease_id = NULL, orphaned = false, previous_claim_id = NULL, started_at = NULL,
         finished_at = CASE WHEN x.status = 'COMPLETED' THEN $2::bigint END, version = n.version + 1
       FROM jsonb_to_recordset($3::jsonb) AS x(name text, status text, pending int, failed int, other int, before int)
       WHERE n.run_id = $1 AND n.name = x.name
       RETURNING n.name, n.runtime, n.status, n.version, n.attempt_count`;

/**
 * The run running again (or completed at once when the plan left nothing
 * open): $2 remaining, $3 failed, $4 conclusion, $5 finished_at. Its
 * conclusion (TIMED_OUT included) goes, and so does its deadline (rule 13:
 * a retried run runs on without one).
 */
export const RETRY_RUN = `UPDATE runs SET remaining = $2, failed = $3, cancelled = false, conclusion = $4, finished_at = $5,
         deadline_at = NULL, deadline_open = NULL
       WHERE id = $1`;
/**
 * Migration 8, schedules (rule 18): one row per schedule, its definition and
 * firing state as one document, and a revision every write compares, so a
 * scheduler's step (moving the next slot) is a compare-and-set.
 */
export const SCHEDULES_MIGRATION = `
CREATE TABLE schedules (
  name     text COLLATE "C" PRIMARY KEY,
  workflow text COLLATE "C" NOT NULL,
  body     jsonb  NOT NULL,
  revision bigint NOT NULL
);
CREATE INDEX schedules_workflow ON schedules (workflow);
`;

export const GET_SCHEDULE = 'SELECT body, revision FROM schedules WHERE name = $1';
export const LIST_SCHEDULES = 'SELECT body FROM schedules ORDER BY name';
export const INSERT_SCHEDULE = `INSERT INTO schedules (name, workflow, body, revision) VALUES ($1, $2, $3, 1)
  ON CONFLICT (name) DO NOTHING`;
export const UPDATE_SCHEDULE = `UPDATE schedules SET workflow = $2, body = $3, revision = revision + 1
  WHERE name = $1 AND revision = $4`;
export const DELETE_SCHEDULE = 'DELETE FROM schedules WHERE name = $1';
export const WORKFLOW_EXISTS = 'SELECT 1 FROM workflows WHERE name = $1 LIMIT 1';

// ---- migrations 11 and 12: set-based claims and finishes (issue 18)

/**
 * Migration 11: claim_nodes as one statement over the batch's arrays (rule 2
 * and rule 3's recovery, same answers as migration 5's), and the claimer's
 * attempts read by (run_id, node) only. Migration 3's attempts subquery
 * matched `node = ANY(upstream) OR node = name`, which PostgreSQL's generic
 * plan served by scanning the run's attempts by run_id: O(run) per claim
 * (8,006 index entries read for one claim in a 10,000-node run with 8,000
 * done). One array probe keeps it to the node's own and its upstream nodes'
 * attempts (rule 9).
 */
export const CLAIM_NODES_SET_MIGRATION = `
-- One UPDATE for the whole batch, still in a PL/pgSQL body so that its plan
-- is cached. The batch is sorted by (run, node) before the join, so batches of
-- different processes lock rows in one order (a deadlock, should a plan ever
-- reorder them, rolls the statement back and the caller repeats it). The
-- UPDATE matches a row only while it is claimable; a concurrent claimer waits
-- on the row lock and re-checks the new version, so exactly one wins.
-- Plans are cached per connection, generic (planning each call cost more
-- than the claims), and made while the tables may still be small: a plan
-- that scans a table or a whole partial index then (a BitmapOr of nodes_ready
-- and nodes_running for the OR below was seen) would stay, and make every
-- batch cost O(table). So no sequential, bitmap, hash or merge scans: every
-- row here is reached by its key.
CREATE OR REPLACE FUNCTION claim_nodes(p_runs text[], p_nodes text[], p_claims text[], p_agents text[],
                                       p_metadata jsonb[], p_leases text[], p_now bigint[], p_repeat boolean)
RETURNS TABLE (i integer, run_id text, name text, idx integer, runtime text, spec jsonb, upstream text[],
               status text, attempt_count integer, claim_id text, claim_agent text, claim_metadata jsonb,
               orphaned boolean, previous_claim_id text, started_at bigint, finished_at bigint, version integer,
               attempts_json json)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $fn$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH x AS MATERIALIZED (
    SELECT x.k::int AS k, x.run, x.node, x.claim, x.agent, x.md, x.lease, x.at
    FROM unnest(p_runs, p_nodes, p_claims, p_agents, p_metadata, p_leases, p_now)
      WITH ORDINALITY AS x(run, node, claim, agent, md, lease, at, k)
    WHERE EXISTS (SELECT 1 FROM leases l WHERE l.id = x.lease AND l.expires_at > now())
    ORDER BY x.run COLLATE "C", x.node COLLATE "C"
  ), c AS (
    UPDATE nodes n SET
      status = 'RUNNING',
      previous_claim_id = CASE WHEN n.claim_id = x.claim THEN n.previous_claim_id
        WHEN n.status = 'RUNNING' THEN n.claim_id END,
      started_at = CASE WHEN n.status = 'READY' THEN x.at ELSE n.started_at END,
      finished_at = CASE WHEN n.status = 'READY' THEN NULL ELSE n.finished_at END,
      claim_id = x.claim, claim_agent = x.agent, claim_metadata = x.md, lease_id = x.lease,
      orphaned = false, version = n.version + 1
    FROM x
    WHERE n.run_id = x.run AND n.name = x.node
      AND ((n.status = 'READY' AND (n.ready_at IS NULL OR n.ready_at <= adagio_now_ms()))
           OR (n.status = 'RUNNING' AND n.orphaned)
           OR (p_repeat AND n.status = 'RUNNING' AND n.claim_id = x.claim))
    RETURNING x.k, n.*
  )
  SELECT c.k, c.run_id::text, c.name::text, c.idx, c.runtime, c.spec, c.upstream, c.status, c.attempt_count,
    c.claim_id::text, c.claim_agent, c.claim_metadata, c.orphaned, c.previous_claim_id, c.started_at,
    c.finished_at, c.version,
    -- The attempts the claimer needs (its own, and its upstream nodes' for inputs), in the same round trip.
    CASE WHEN cardinality(c.upstream) = 0 AND c.attempt_count = 0 THEN '[]'::json ELSE
      (SELECT coalesce(json_agg(json_build_object('node', a.node, 'n', a.n, 'conclusion', a.conclusion,
                'metadata', a.metadata, 'output', encode(a.output, 'base64'), 'claim_id', a.claim_id,
                'agent_id', a.agent_id, 'started_at', a.started_at, 'finished_at', a.finished_at)), '[]')
       FROM attempts a
       WHERE a.run_id = c.run_id
         AND a.node = ANY (CASE WHEN c.attempt_count > 0 THEN c.upstream || c.name::text ELSE c.upstream END))
    END
  FROM c;
END
$fn$;
`;

/**
 * Migration 12: finishes as a few statements over the batch's arrays
 * (finish_nodes), replacing finish_timed, finish_streamed, finish_attempt and
 * settle_dependents (dropped: the rules live in one place). Rules 4, 5 (with
 * its retry delay), 10's streamed output, 14's settling of dependents and 7's
 * run status, with the answers of the functions it replaces (held to src/model
 * by test/postgres/finish-rules.test.ts), and one notice per run per batch.
 * Rule 20's reported start (p_started) bounds the attempt's started_at as
 * model attemptStartMs does, in the same INSERT.
 */
export const FINISH_NODES_MIGRATION = `
DROP FUNCTION finish_timed(text, text, text, text, jsonb, bytea, bigint, boolean);
DROP FUNCTION finish_streamed(text, text, text, text, jsonb, bytea, bigint, boolean);
DROP FUNCTION finish_attempt(text, text, text, text, jsonb, bytea, bigint, boolean);
DROP FUNCTION settle_dependents(text, text, text, bigint);

-- A call of a finish batch as judged under the locks: the node before the finish, whether the claim
-- holds (live), whether the node goes back to READY (retry) and after what delay.
CREATE TYPE finish_call AS (
  k integer, run text, node text, conclusion text, at bigint,
  has_run boolean, has_node boolean, cancelled boolean, status text, orphaned boolean,
  live boolean, recorded boolean, retry boolean, delay bigint, ready_at bigint,
  runtime text, fanout boolean, version integer, attempt_count integer, started_at bigint
);

-- A dependent whose trigger decided (READY, or COMPLETED unreached).
CREATE TYPE settled_node AS (
  run_id text, name text, runtime text, status text, version integer, attempt_count integer, finished_at bigint
);

-- Rule 14 for a set of nodes that completed (p_outcomes: succeeded, failed or
-- neither): their WAITING dependents count them in, one UPDATE per level, and
-- their triggers decide; those that go unreached are passed on as "neither",
-- level by level. Direct dependents only (rule 9). Returns the dependents that
-- became READY or COMPLETED.
CREATE FUNCTION settle_nodes(p_runs text[], p_nodes text[], p_outcomes text[], p_now bigint[])
RETURNS SETOF settled_node LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $fn$
DECLARE
  v_runs text[] := p_runs;
  v_nodes text[] := p_nodes;
  v_outcomes text[] := p_outcomes;
  v_now bigint[] := p_now;
  v_level settled_node[];
  v_at bigint[];
BEGIN
  WHILE cardinality(v_runs) > 0 LOOP
    WITH src AS (
      SELECT f.run, d.name AS dep, f.outcome, f.at
      FROM unnest(v_runs, v_nodes, v_outcomes, v_now) AS f(run, node, outcome, at)
      JOIN nodes s ON s.run_id = f.run AND s.name = f.node
      CROSS JOIN LATERAL unnest(s.downstream) AS d(name)
    ), cnt AS (
      SELECT run, dep, count(*) FILTER (WHERE outcome = 'succeeded')::int AS ks,
             count(*) FILTER (WHERE outcome = 'failed')::int AS kf,
             count(*) FILTER (WHERE outcome = 'neither')::int AS kn, max(at) AS at
      FROM src GROUP BY run, dep
    ), u AS (
      UPDATE nodes n SET
        pending_upstream = n.pending_upstream - c.ks,
        failed_upstream = n.failed_upstream + c.kf,
        other_upstream = n.other_upstream + c.kn,
        status = CASE trigger_decision(n.spec ->> 'trigger', cardinality(n.upstream),
            cardinality(n.upstream) - n.pending_upstream + c.ks + n.failed_upstream + c.kf + n.other_upstream + c.kn,
            cardinality(n.upstream) - n.pending_upstream + c.ks, n.failed_upstream + c.kf)
          WHEN 'READY' THEN 'READY' WHEN 'UNREACHED' THEN 'COMPLETED' ELSE n.status END,
        finished_at = CASE WHEN trigger_decision(n.spec ->> 'trigger', cardinality(n.upstream),
            cardinality(n.upstream) - n.pending_upstream + c.ks + n.failed_upstream + c.kf + n.other_upstream + c.kn,
            cardinality(n.upstream) - n.pending_upstream + c.ks, n.failed_upstream + c.kf) = 'UNREACHED'
          THEN c.at ELSE n.finished_at END,
        version = n.version + CASE WHEN trigger_decision(n.spec ->> 'trigger', cardinality(n.upstream),
            cardinality(n.upstream) - n.pending_upstream + c.ks + n.failed_upstream + c.kf + n.other_upstream + c.kn,
            cardinality(n.upstream) - n.pending_upstream + c.ks, n.failed_upstream + c.kf) = 'WAIT' THEN 0 ELSE 1 END
      -- coalesce: the WAITING test must not let the plan read the run's WAITING nodes (nodes_waiting) by run_id.
      FROM cnt c WHERE n.run_id = c.run AND n.name = c.dep AND coalesce(n.status = 'WAITING', false)
      RETURNING n.run_id, n.name, n.runtime, n.status, n.version, n.attempt_count, n.finished_at
    )
    SELECT coalesce(array_agg(ROW(u.run_id, u.name, u.runtime, u.status, u.version, u.attempt_count,
                                  u.finished_at)::settled_node), '{}')
      INTO v_level FROM u WHERE u.status <> 'WAITING';
    RETURN QUERY SELECT * FROM unnest(v_level);
    SELECT coalesce(array_agg(s.run_id), '{}'), coalesce(array_agg(s.name), '{}'),
           coalesce(array_agg('neither'::text), '{}'), coalesce(array_agg(s.finished_at), '{}')
      INTO v_runs, v_nodes, v_outcomes, v_now
      FROM unnest(v_level) s WHERE s.status = 'COMPLETED';
  END LOOP;
END
$fn$;

-- Finishes a batch of attempts (rules 4, 5, 7, 10, 14) in a few statements
-- over the arrays (p_started: each holder's reported start, rule 20; NULL: none):
-- one row per call (i: its 1-based position, r: {"ok": true},
-- {"recorded": true} for a repeat whose attempt is stored, {"missing": "run" |
-- "node"} or {"conflict": true, status, orphaned, cancelled}) and one row per
-- run changed (i = 0, r: the notice to publish once this commits).
-- Locks: the batch's runs (sorted), then its nodes (sorted), as cancel and
-- retry lock a run and then its nodes, so finishes within a run serialise on
-- the run's row and batches never deadlock one another. The streamed output is
-- read after the node locks (an append locks the node), so none slips in.
-- Both functions reach every row by its key (see claim_nodes on cached plans).
CREATE FUNCTION finish_nodes(p_runs text[], p_nodes text[], p_claims text[], p_conclusions text[],
                             p_metadata jsonb[], p_outputs bytea[], p_now bigint[], p_started bigint[],
                             p_repeat boolean)
RETURNS TABLE (i integer, r jsonb) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $fn$
#variable_conflict use_column
DECLARE
  v_calls finish_call[];
  v_settled settled_node[] := '{}';
BEGIN
  PERFORM 1 FROM runs WHERE id = ANY(p_runs) ORDER BY id FOR NO KEY UPDATE;
  PERFORM 1 FROM nodes n JOIN unnest(p_runs, p_nodes) AS x(run, node) ON n.run_id = x.run AND n.name = x.node
    ORDER BY n.run_id, n.name FOR UPDATE OF n;

  WITH x AS (
    SELECT x.k::int AS k, x.run, x.node, x.claim, x.conclusion, x.md, x.output, x.at, x.reported
    FROM unnest(p_runs, p_nodes, p_claims, p_conclusions, p_metadata, p_outputs, p_now, p_started)
      WITH ORDINALITY AS x(run, node, claim, conclusion, md, output, at, reported, k)
  ), j AS MATERIALIZED (
    SELECT x.*, ru.id IS NOT NULL AS has_run, coalesce(ru.cancelled, false) AS cancelled,
      n.name IS NOT NULL AS has_node, n.status, n.orphaned, n.runtime, n.downstream, n.attempt_count,
      n.claim_agent, n.started_at, n.version, n.backoff,
      n.fail_count + (x.conclusion = 'FAIL')::int AS fails, n.error_count + (x.conclusion = 'ERROR')::int AS errors,
      -- Rule 4: only the node's live claim may finish it.
      coalesce(n.status = 'RUNNING' AND n.claim_id = x.claim AND NOT n.orphaned, false) AS live,
      -- Rule 5: retry[conclusion].maxAttempts counts attempts of that conclusion, this one included.
      coalesce(x.conclusion IN ('FAIL', 'ERROR') AND
        (CASE x.conclusion WHEN 'FAIL' THEN n.fail_count ELSE n.error_count END) + 1
          < (n.spec -> 'retry' -> lower(x.conclusion) ->> 'maxAttempts')::integer, false) AS retry,
      lo.output AS streamed
    FROM x
    LEFT JOIN runs ru ON ru.id = x.run
    LEFT JOIN nodes n ON n.run_id = x.run AND n.name = x.node
    LEFT JOIN live_outputs lo ON lo.run_id = x.run AND lo.node = x.node AND lo.attempt = n.attempt_count + 1
      AND n.claim_id = x.claim
  ), f AS MATERIALIZED (
    -- Rule 5's delay, drawn once per retry: only the node's own retry waits.
    SELECT j.*, CASE WHEN j.retry THEN retry_delay_ms(j.backoff -> lower(j.conclusion),
        CASE j.conclusion WHEN 'FAIL' THEN j.fails ELSE j.errors END) ELSE 0 END AS delay
    FROM j WHERE j.live
  ), a AS (
    INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
    SELECT f.run, f.node, f.attempt_count + 1, f.conclusion, f.md, attempt_output(f.streamed, f.output), f.claim,
      coalesce(f.claim_agent, ''),
      -- Rule 20 (model attemptStartMs): a reported start, kept within [claimed at, finished at]; else the claim's.
      CASE WHEN f.reported IS NULL OR coalesce(f.started_at, 0) = 0 THEN f.started_at
        ELSE greatest(f.started_at, least(f.reported, f.at)) END,
      f.at
    FROM f
  ), u AS (
    UPDATE nodes n SET status = CASE WHEN f.retry THEN 'READY' ELSE 'COMPLETED' END,
      attempt_count = n.attempt_count + 1, fail_count = f.fails, error_count = f.errors,
      claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
      previous_claim_id = NULL, finished_at = CASE WHEN f.retry THEN NULL ELSE f.at END,
      ready_at = CASE WHEN f.delay > 0 THEN adagio_now_ms() + f.delay END,
      version = n.version + 1
    FROM f WHERE n.run_id = f.run AND n.name = f.node
    RETURNING f.k, n.ready_at
  ), lo AS (
    DELETE FROM live_outputs l USING f WHERE l.run_id = f.run AND l.node = f.node
  )
  SELECT array_agg(ROW(j.k, j.run, j.node, j.conclusion, j.at, j.has_run, j.has_node, j.cancelled, j.status,
      j.orphaned, j.live,
      NOT j.live AND p_repeat AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = j.run AND a.node = j.node
                                            AND a.claim_id = j.claim AND a.conclusion = j.conclusion),
      j.retry, coalesce(f.delay, 0), u.ready_at, j.runtime, cardinality(j.downstream) > 0, j.version,
      j.attempt_count, j.started_at)::finish_call ORDER BY j.k)
    INTO v_calls
    FROM j LEFT JOIN f ON f.k = j.k LEFT JOIN u ON u.k = j.k;

  -- Completed (succeeded, or failed for good): the dependents' triggers judge them (rule 14).
  IF EXISTS (SELECT 1 FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout) THEN
    SELECT coalesce(array_agg(s), '{}') INTO v_settled FROM settle_nodes(
      ARRAY(SELECT c.run FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT c.node FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT CASE WHEN c.conclusion = 'SUCCESS' THEN 'succeeded' ELSE 'failed' END
              FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT c.at FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k)) s;
  END IF;

  RETURN QUERY
  SELECT c.k, CASE
      WHEN c.live THEN '{"ok": true}'::jsonb
      WHEN c.recorded THEN '{"recorded": true}'::jsonb
      WHEN NOT c.has_run THEN '{"missing": "run"}'::jsonb
      WHEN NOT c.has_node THEN '{"missing": "node"}'::jsonb
      ELSE jsonb_build_object('conflict', true, 'status', c.status, 'orphaned', c.orphaned,
                              'cancelled', c.cancelled) END
  FROM unnest(v_calls) c;

  -- Rule 7 per run: the nodes completed here count down remaining; the run concludes at 0.
  RETURN QUERY
  WITH fin AS (
    SELECT * FROM unnest(v_calls) c WHERE c.live
  ), st AS (
    SELECT * FROM unnest(v_settled)
  ), t AS (
    SELECT f.run, count(*) FILTER (WHERE NOT f.retry)
        + (SELECT count(*) FROM st WHERE st.run_id = f.run AND st.status = 'COMPLETED') AS c,
      bool_or(NOT f.retry AND f.conclusion <> 'SUCCESS') AS failed, max(f.at) AS at
    FROM fin f GROUP BY f.run
  ), ru AS (
    UPDATE runs rr SET remaining = rr.remaining - t.c, failed = rr.failed OR t.failed,
      conclusion = CASE WHEN rr.remaining - t.c = 0 THEN CASE WHEN rr.cancelled THEN 'CANCELLED'
        WHEN rr.failed OR t.failed THEN 'FAIL' ELSE 'SUCCESS' END END,
      finished_at = CASE WHEN rr.remaining - t.c = 0 THEN coalesce(rr.finished_at, t.at) ELSE rr.finished_at END
    FROM t WHERE rr.id = t.run AND t.c > 0
    RETURNING rr.id, rr.remaining, rr.conclusion
  ), ch AS (
    SELECT f.run, f.k AS o, jsonb_build_object('n', f.node, 'v', f.version + 1,
        's', CASE WHEN f.retry THEN 'READY' ELSE 'COMPLETED' END, 'a', f.attempt_count + 1, 'st', f.started_at,
        'ft', CASE WHEN f.retry THEN NULL ELSE f.at END)
        || CASE WHEN f.ready_at IS NOT NULL THEN jsonb_build_object('na', f.ready_at) ELSE '{}' END AS d,
      CASE WHEN f.retry AND f.ready_at IS NULL THEN jsonb_build_array(f.node, f.runtime) END AS rd
    FROM fin f
    UNION ALL
    SELECT s.run_id, 2147483647, CASE WHEN s.status = 'READY'
        THEN jsonb_build_object('n', s.name, 'v', s.version, 's', 'READY', 'a', s.attempt_count)
        ELSE jsonb_build_object('n', s.name, 'v', s.version, 's', 'COMPLETED', 'a', s.attempt_count,
                                'ft', s.finished_at) END,
      CASE WHEN s.status = 'READY' THEN jsonb_build_array(s.name, s.runtime) END
    FROM st s
  ), e AS (
    -- Per run, its changes in call order (the input's order is the aggregates' order).
    SELECT o.run, jsonb_agg(o.d) AS ch, jsonb_agg(o.rd) FILTER (WHERE o.rd IS NOT NULL) AS rd
    FROM (SELECT * FROM ch ORDER BY ch.run, ch.o) o GROUP BY o.run
  )
  SELECT 0, jsonb_build_object('r', t.run, 'ch', e.ch,
      'rs', CASE WHEN coalesce(ru.remaining, r0.remaining) = 0 THEN 'COMPLETED'
        WHEN coalesce(ru.remaining, r0.remaining) < r0.node_count THEN 'RUNNING'
        -- Back to READY with nothing completed yet: the run is RUNNING only if another node is.
        WHEN EXISTS (SELECT 1 FROM nodes WHERE run_id = t.run AND status = 'RUNNING') THEN 'RUNNING'
        ELSE 'WAITING' END)
    || CASE WHEN ru.conclusion IS NOT NULL THEN jsonb_build_object('rc', ru.conclusion) ELSE '{}' END
    || CASE WHEN e.rd IS NOT NULL THEN jsonb_build_object('rd', e.rd) ELSE '{}' END
  FROM t JOIN runs r0 ON r0.id = t.run LEFT JOIN ru ON ru.id = t.run JOIN e ON e.run = t.run;
END
$fn$;
`;

/**
 * Migration 13 (rule 20): claim-ahead. release_claim gives back a claim whose
 * work never started: the node READY again (announced), no attempt, attempt
 * number kept; NULL, changing nothing, when the claim no longer holds the
 * node. (The reported start of rule 20 is finish_nodes' p_started, migration
 * 12, since both land in one release.)
 */
export const CLAIM_AHEAD_MIGRATION = `
-- Locks the run, then the node, as finish_nodes does.
CREATE FUNCTION release_claim(p_run text, p_node text, p_claim text)
RETURNS jsonb LANGUAGE plpgsql AS $fn$
DECLARE
  v_run record;
  v_node record;
BEGIN
  SELECT node_count, remaining, cancelled INTO v_run FROM runs WHERE id = p_run FOR NO KEY UPDATE;
  IF NOT FOUND OR v_run.cancelled THEN RETURN NULL; END IF;
  UPDATE nodes SET status = 'READY', claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL,
    orphaned = false, previous_claim_id = NULL, ready_at = NULL, version = version + 1
  WHERE run_id = p_run AND name = p_node AND status = 'RUNNING' AND claim_id = p_claim AND NOT orphaned
  RETURNING runtime, version, attempt_count, started_at INTO v_node;
  IF NOT FOUND THEN RETURN NULL; END IF;
  DELETE FROM live_outputs WHERE run_id = p_run AND node = p_node;
  RETURN jsonb_build_object('r', p_run,
    -- Rule 7: RUNNING while a node left WAITING/READY (completed, or another one running).
    'rs', CASE WHEN v_run.remaining < v_run.node_count
                 OR EXISTS (SELECT 1 FROM nodes WHERE run_id = p_run AND status = 'RUNNING')
          THEN 'RUNNING' ELSE 'WAITING' END,
    'rd', jsonb_build_array(jsonb_build_array(p_node, v_node.runtime)),
    'ch', jsonb_build_array(jsonb_build_object('n', p_node, 'v', v_node.version, 's', 'READY',
      'a', v_node.attempt_count, 'st', v_node.started_at)));
END
$fn$;
`;

/**
 * Migration 14 (issue 18): fewer rows and index entries written per
 * transition. An update whose new row version fits on its page, and which
 * changes no column an index names (its predicate included), is heap-only
 * (HOT): no index entry is written. One that does not fit moves to another
 * page, which also logs a lock of the old version first. Pages were filled to
 * the brim on insert, so every update of a node or a run moved, and
 * runs_deadlines named conclusion in its predicate, so every conclusion also
 * wrote a new entry into each of the runs' indexes. Measured
 * (bench/pg-width-ab.ts, 3 rounds): WAL per node 1,716 -> 1,362 bytes for
 * one-node runs, 1,796 -> 1,540 for the 7-node DAG, 1,300 -> 1,167 for one
 * wide run; the server's CPU per node 3-8% less.
 *
 * A fill factor of 70 leaves each page of runs and nodes room for its rows'
 * next versions (a node's status is in every partial index, so its claim and
 * finish are never HOT, but they stay on the page). runs_deadlines gives way
 * to runs_open_deadlines over deadline_open, which concluding leaves as it is
 * (the sweep's RUNS_PAST_DEADLINE clears it once the deadline passes), so a run's
 * updates, its conclusion included, are HOT.
 */
export const RUNS_HOT_MIGRATION = `
ALTER TABLE runs SET (fillfactor = 70);
ALTER TABLE nodes SET (fillfactor = 70);
-- Rule 13's deadline while the sweeper may still have to judge it: deadline_at until the sweep after it passes
-- or a retry lifts it; NULL for runs without a deadline.
ALTER TABLE runs ADD COLUMN deadline_open bigint;
UPDATE runs SET deadline_open = deadline_at WHERE conclusion IS NULL AND deadline_at IS NOT NULL;
DROP INDEX runs_deadlines;
CREATE INDEX runs_open_deadlines ON runs (deadline_open) WHERE deadline_open IS NOT NULL;
`;

/**
 * Migration 15 (issue 18): finish_nodes' cost linear in its batch. Its
 * functions turn hash and merge joins off so that every table row is reached
 * by its key, but that also made each join of one CTE to another a nested
 * loop: the batch's calls joined to its live finishes and to the node
 * updates' answers, the runs' counts to their updates and to their changes,
 * a settled-dependents count per run. Each such join reads n × n rows, so a
 * node's share of a batch's cost grew with the batch: auto_explain of one
 * batch of 299 one-node runs, 84 ms, of which 67 in those joins. Now no CTE
 * is joined to another: the retry delay is drawn in the materialised read of
 * the calls (once per call, as before), the delayed node's ready_at is
 * computed from the statement's clock read once (adagio_now_ms is the
 * transaction's time), and each run's counts, changes and update come out of
 * one grouping, the run's update returning what its notice needs. Same
 * answers, same rows written, same locks in the same order
 * (test/postgres/finish-rules.test.ts; test/postgres/finish-batch.test.ts
 * checks that no CTE is scanned once per row of another).
 */
export const FINISH_NODES_LINEAR_MIGRATION = `
CREATE OR REPLACE FUNCTION finish_nodes(p_runs text[], p_nodes text[], p_claims text[], p_conclusions text[],
                                        p_metadata jsonb[], p_outputs bytea[], p_now bigint[], p_started bigint[],
                                        p_repeat boolean)
RETURNS TABLE (i integer, r jsonb) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off SET enable_hashjoin = off
SET enable_mergejoin = off AS $fn$
#variable_conflict use_column
DECLARE
  v_calls finish_call[];
  v_settled settled_node[] := '{}';
  -- The transaction's time (adagio_now_ms reads now()): a delayed retry's ready_at counts from it.
  v_now_ms bigint := adagio_now_ms();
BEGIN
  PERFORM 1 FROM runs WHERE id = ANY(p_runs) ORDER BY id FOR NO KEY UPDATE;
  PERFORM 1 FROM nodes n JOIN unnest(p_runs, p_nodes) AS x(run, node) ON n.run_id = x.run AND n.name = x.node
    ORDER BY n.run_id, n.name FOR UPDATE OF n;

  WITH x AS (
    SELECT x.k::int AS k, x.run, x.node, x.claim, x.conclusion, x.md, x.output, x.at, x.reported
    FROM unnest(p_runs, p_nodes, p_claims, p_conclusions, p_metadata, p_outputs, p_now, p_started)
      WITH ORDINALITY AS x(run, node, claim, conclusion, md, output, at, reported, k)
  ), j AS MATERIALIZED (
    -- Rule 5's delay, drawn once per retry (materialised): only the node's own retry waits.
    SELECT c.*, CASE WHEN c.live AND c.retry THEN retry_delay_ms(c.backoff -> lower(c.conclusion),
        CASE c.conclusion WHEN 'FAIL' THEN c.fails ELSE c.errors END) ELSE 0 END AS delay
    FROM (
      SELECT x.*, ru.id IS NOT NULL AS has_run, coalesce(ru.cancelled, false) AS cancelled,
        n.name IS NOT NULL AS has_node, n.status, n.orphaned, n.runtime, n.downstream, n.attempt_count,
        n.claim_agent, n.started_at, n.version, n.backoff,
        n.fail_count + (x.conclusion = 'FAIL')::int AS fails, n.error_count + (x.conclusion = 'ERROR')::int AS errors,
        -- Rule 4: only the node's live claim may finish it.
        coalesce(n.status = 'RUNNING' AND n.claim_id = x.claim AND NOT n.orphaned, false) AS live,
        -- Rule 5: retry[conclusion].maxAttempts counts attempts of that conclusion, this one included.
        coalesce(x.conclusion IN ('FAIL', 'ERROR') AND
          (CASE x.conclusion WHEN 'FAIL' THEN n.fail_count ELSE n.error_count END) + 1
            < (n.spec -> 'retry' -> lower(x.conclusion) ->> 'maxAttempts')::integer, false) AS retry,
        lo.output AS streamed
      FROM x
      LEFT JOIN runs ru ON ru.id = x.run
      LEFT JOIN nodes n ON n.run_id = x.run AND n.name = x.node
      LEFT JOIN live_outputs lo ON lo.run_id = x.run AND lo.node = x.node AND lo.attempt = n.attempt_count + 1
        AND n.claim_id = x.claim
    ) c
  ), f AS (
    SELECT * FROM j WHERE j.live
  ), a AS (
    INSERT INTO attempts (run_id, node, n, conclusion, metadata, output, claim_id, agent_id, started_at, finished_at)
    SELECT f.run, f.node, f.attempt_count + 1, f.conclusion, f.md, attempt_output(f.streamed, f.output), f.claim,
      coalesce(f.claim_agent, ''),
      -- Rule 20 (model attemptStartMs): a reported start, kept within [claimed at, finished at]; else the claim's.
      CASE WHEN f.reported IS NULL OR coalesce(f.started_at, 0) = 0 THEN f.started_at
        ELSE greatest(f.started_at, least(f.reported, f.at)) END,
      f.at
    FROM f
  ), u AS (
    UPDATE nodes n SET status = CASE WHEN f.retry THEN 'READY' ELSE 'COMPLETED' END,
      attempt_count = n.attempt_count + 1, fail_count = f.fails, error_count = f.errors,
      claim_id = NULL, claim_agent = NULL, claim_metadata = NULL, lease_id = NULL, orphaned = false,
      previous_claim_id = NULL, finished_at = CASE WHEN f.retry THEN NULL ELSE f.at END,
      ready_at = CASE WHEN f.delay > 0 THEN v_now_ms + f.delay END,
      version = n.version + 1
    FROM f WHERE n.run_id = f.run AND n.name = f.node
  ), lo AS (
    DELETE FROM live_outputs l USING f WHERE l.run_id = f.run AND l.node = f.node
  )
  SELECT array_agg(ROW(j.k, j.run, j.node, j.conclusion, j.at, j.has_run, j.has_node, j.cancelled, j.status,
      j.orphaned, j.live,
      NOT j.live AND p_repeat AND EXISTS (SELECT 1 FROM attempts a WHERE a.run_id = j.run AND a.node = j.node
                                            AND a.claim_id = j.claim AND a.conclusion = j.conclusion),
      j.retry, j.delay, CASE WHEN j.delay > 0 THEN v_now_ms + j.delay END, j.runtime, cardinality(j.downstream) > 0,
      j.version, j.attempt_count, j.started_at)::finish_call ORDER BY j.k)
    INTO v_calls
    FROM j;

  -- Completed (succeeded, or failed for good): the dependents' triggers judge them (rule 14).
  IF EXISTS (SELECT 1 FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout) THEN
    SELECT coalesce(array_agg(s), '{}') INTO v_settled FROM settle_nodes(
      ARRAY(SELECT c.run FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT c.node FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT CASE WHEN c.conclusion = 'SUCCESS' THEN 'succeeded' ELSE 'failed' END
              FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k),
      ARRAY(SELECT c.at FROM unnest(v_calls) c WHERE c.live AND NOT c.retry AND c.fanout ORDER BY c.k)) s;
  END IF;

  RETURN QUERY
  SELECT c.k, CASE
      WHEN c.live THEN '{"ok": true}'::jsonb
      WHEN c.recorded THEN '{"recorded": true}'::jsonb
      WHEN NOT c.has_run THEN '{"missing": "run"}'::jsonb
      WHEN NOT c.has_node THEN '{"missing": "node"}'::jsonb
      ELSE jsonb_build_object('conflict', true, 'status', c.status, 'orphaned', c.orphaned,
                              'cancelled', c.cancelled) END
  FROM unnest(v_calls) c;

  -- Rule 7 per run: the nodes completed here count down remaining; the run concludes at 0.
  RETURN QUERY
  WITH ch AS (
    -- Every change of the batch (the finishes in call order, then the dependents settled, in their order), with
    -- what it counts toward its run's countdown.
    SELECT f.run, f.k AS o, 0::bigint AS so, (NOT f.retry)::int AS done,
      NOT f.retry AND f.conclusion <> 'SUCCESS' AS failed, f.at,
      jsonb_build_object('n', f.node, 'v', f.version + 1,
        's', CASE WHEN f.retry THEN 'READY' ELSE 'COMPLETED' END, 'a', f.attempt_count + 1, 'st', f.started_at,
        'ft', CASE WHEN f.retry THEN NULL ELSE f.at END)
        || CASE WHEN f.ready_at IS NOT NULL THEN jsonb_build_object('na', f.ready_at) ELSE '{}' END AS d,
      CASE WHEN f.retry AND f.ready_at IS NULL THEN jsonb_build_array(f.node, f.runtime) END AS rd
    FROM unnest(v_calls) f WHERE f.live
    UNION ALL
    SELECT s.run_id, 2147483647, s.so, (s.status = 'COMPLETED')::int, false, NULL,
      CASE WHEN s.status = 'READY'
        THEN jsonb_build_object('n', s.name, 'v', s.version, 's', 'READY', 'a', s.attempt_count)
        ELSE jsonb_build_object('n', s.name, 'v', s.version, 's', 'COMPLETED', 'a', s.attempt_count,
                                'ft', s.finished_at) END,
      CASE WHEN s.status = 'READY' THEN jsonb_build_array(s.name, s.runtime) END
    FROM unnest(v_settled) WITH ORDINALITY AS s(run_id, name, runtime, status, version, attempt_count, finished_at, so)
  ), t AS (
    -- Per run: the nodes completed here, whether one failed for good, the latest finish, its changes in order.
    SELECT ch.run, sum(ch.done)::int AS c, bool_or(ch.failed) AS failed, max(ch.at) AS at,
      jsonb_agg(ch.d ORDER BY ch.o, ch.so) AS ch,
      jsonb_agg(ch.rd ORDER BY ch.o, ch.so) FILTER (WHERE ch.rd IS NOT NULL) AS rd
    FROM ch GROUP BY ch.run
  ), ru AS (
    UPDATE runs rr SET remaining = rr.remaining - t.c, failed = rr.failed OR t.failed,
      conclusion = CASE WHEN rr.remaining - t.c = 0 THEN CASE WHEN rr.cancelled THEN 'CANCELLED'
        WHEN rr.failed OR t.failed THEN 'FAIL' ELSE 'SUCCESS' END END,
      finished_at = CASE WHEN rr.remaining - t.c = 0 THEN coalesce(rr.finished_at, t.at) ELSE rr.finished_at END
    FROM t WHERE rr.id = t.run AND t.c > 0
    RETURNING t.run, t.ch, t.rd, rr.remaining, rr.node_count, rr.conclusion
  ), rs AS (
    SELECT * FROM ru
    UNION ALL
    -- Runs whose nodes here all go back to READY: their row stays as it was.
    SELECT t.run, t.ch, t.rd, r0.remaining, r0.node_count, NULL FROM t JOIN runs r0 ON r0.id = t.run WHERE t.c = 0
  )
  SELECT 0, jsonb_build_object('r', rs.run, 'ch', rs.ch,
      'rs', CASE WHEN rs.remaining = 0 THEN 'COMPLETED'
        WHEN rs.remaining < rs.node_count THEN 'RUNNING'
        -- Back to READY with nothing completed yet: the run is RUNNING only if another node is.
        WHEN EXISTS (SELECT 1 FROM nodes WHERE run_id = rs.run AND status = 'RUNNING') THEN 'RUNNING'
        ELSE 'WAITING' END)
    || CASE WHEN rs.conclusion IS NOT NULL THEN jsonb_build_object('rc', rs.conclusion) ELSE '{}' END
    || CASE WHEN rs.rd IS NOT NULL THEN jsonb_build_object('rd', rs.rd) ELSE '{}' END
  FROM rs;
END
$fn$;
`;
