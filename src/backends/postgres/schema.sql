CREATE SCHEMA adagio;

CREATE TYPE adagio.finish_call AS (
	k integer,
	run text,
	node text,
	conclusion text,
	at bigint,
	has_run boolean,
	has_node boolean,
	cancelled boolean,
	status text,
	orphaned boolean,
	live boolean,
	recorded boolean,
	retry boolean,
	delay bigint,
	ready_at bigint,
	runtime text,
	fanout boolean,
	version integer,
	attempt_count integer,
	started_at bigint
);

CREATE TYPE adagio.settled_node AS (
	run_id text,
	name text,
	runtime text,
	status text,
	version integer,
	attempt_count integer,
	finished_at bigint
);

CREATE FUNCTION adagio.adagio_now_ms() RETURNS bigint
    LANGUAGE plpgsql STABLE
    AS $$
BEGIN
  RETURN (extract(epoch FROM now()) * 1000)::bigint;
END
$$;

CREATE FUNCTION adagio.attempt_output(p_live bytea, p_extra bytea) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE
    AS $$
DECLARE
  v_marker bytea := convert_to(E'\n…[output truncated by adagio]', 'UTF8');
  v_room integer := 1048576 - length(v_marker);
BEGIN
  IF p_live IS NULL OR length(p_live) = 0 THEN RETURN p_extra; END IF;
  IF length(p_live) > v_room OR length(p_extra) = 0 THEN RETURN p_live; END IF;
  IF length(p_live) + length(p_extra) <= v_room THEN RETURN p_live || p_extra; END IF;
  RETURN p_live || substring(p_extra FROM 1 FOR v_room - length(p_live)) || v_marker;
END
$$;

CREATE FUNCTION adagio.claim_nodes(p_runs text[], p_nodes text[], p_claims text[], p_agents text[], p_metadata jsonb[], p_leases text[], p_now bigint[], p_repeat boolean) RETURNS TABLE(i integer, run_id text, name text, idx integer, runtime text, spec jsonb, upstream text[], status text, attempt_count integer, claim_id text, claim_agent text, claim_metadata jsonb, orphaned boolean, previous_claim_id text, started_at bigint, finished_at bigint, version integer, attempts_json json)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
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
$$;

CREATE FUNCTION adagio.finish_nodes(p_runs text[], p_nodes text[], p_claims text[], p_conclusions text[], p_metadata jsonb[], p_outputs bytea[], p_now bigint[], p_started bigint[], p_repeat boolean) RETURNS TABLE(i integer, r jsonb)
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
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
$$;

CREATE FUNCTION adagio.release_claim(p_run text, p_node text, p_claim text) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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
$$;

CREATE FUNCTION adagio.retry_delay_ms(p_backoff jsonb, p_retry integer) RETURNS bigint
    LANGUAGE plpgsql
    AS $$
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
$$;

CREATE FUNCTION adagio.settle_nodes(p_runs text[], p_nodes text[], p_outcomes text[], p_now bigint[]) RETURNS SETOF adagio.settled_node
    LANGUAGE plpgsql
    SET plan_cache_mode TO 'force_generic_plan'
    SET enable_seqscan TO 'off'
    SET enable_bitmapscan TO 'off'
    SET enable_hashjoin TO 'off'
    SET enable_mergejoin TO 'off'
    AS $$
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
$$;

CREATE FUNCTION adagio.trigger_decision(p_rule text, p_total integer, p_completed integer, p_succeeded integer, p_failed integer) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$
  SELECT CASE
    WHEN p_completed = p_total THEN
      CASE WHEN trigger_holds(p_rule, p_total, p_succeeded, p_failed) THEN 'READY' ELSE 'UNREACHED' END
    WHEN trigger_holds(p_rule, p_total, p_succeeded + p_total - p_completed, p_failed)
      OR trigger_holds(p_rule, p_total, p_succeeded, p_failed + p_total - p_completed) THEN 'WAIT'
    ELSE 'UNREACHED'
  END
$$;

CREATE FUNCTION adagio.trigger_holds(p_rule text, p_total integer, p_succeeded integer, p_failed integer) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$
  SELECT CASE coalesce(nullif(p_rule, ''), 'all_success')
    WHEN 'all_success' THEN p_succeeded = p_total
    WHEN 'all_done' THEN true
    WHEN 'all_failed' THEN p_failed = p_total
    WHEN 'one_failed' THEN p_failed > 0
    WHEN 'one_success' THEN p_succeeded > 0
    WHEN 'none_failed' THEN p_failed = 0
  END
$$;

CREATE TABLE adagio.agents (
    id text NOT NULL,
    lease_id text NOT NULL COLLATE pg_catalog."C",
    runtimes jsonb NOT NULL,
    hostname text NOT NULL,
    started_at bigint NOT NULL
);

CREATE TABLE adagio.attempts (
    run_id text NOT NULL COLLATE pg_catalog."C",
    node text NOT NULL COLLATE pg_catalog."C",
    n integer NOT NULL,
    conclusion text NOT NULL,
    metadata jsonb NOT NULL,
    output bytea NOT NULL,
    claim_id text NOT NULL,
    agent_id text NOT NULL,
    started_at bigint,
    finished_at bigint NOT NULL
);

CREATE TABLE adagio.counters (
    shard integer NOT NULL,
    runs bigint DEFAULT 0 NOT NULL,
    nodes bigint DEFAULT 0 NOT NULL
);

CREATE TABLE adagio.leases (
    id text NOT NULL COLLATE pg_catalog."C",
    ttl_ms integer NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

CREATE TABLE adagio.live_outputs (
    run_id text NOT NULL COLLATE pg_catalog."C",
    node text NOT NULL COLLATE pg_catalog."C",
    attempt integer NOT NULL,
    next_seq integer NOT NULL,
    output bytea NOT NULL
);

CREATE TABLE adagio.nodes (
    run_id text NOT NULL COLLATE pg_catalog."C",
    name text NOT NULL COLLATE pg_catalog."C",
    idx integer NOT NULL,
    runtime text NOT NULL,
    spec jsonb NOT NULL,
    upstream text[] NOT NULL,
    downstream text[] NOT NULL,
    status text NOT NULL,
    pending_upstream integer NOT NULL,
    attempt_count integer DEFAULT 0 NOT NULL,
    fail_count integer DEFAULT 0 NOT NULL,
    error_count integer DEFAULT 0 NOT NULL,
    claim_id text COLLATE pg_catalog."C",
    claim_agent text,
    claim_metadata jsonb,
    lease_id text COLLATE pg_catalog."C",
    orphaned boolean DEFAULT false NOT NULL,
    previous_claim_id text,
    started_at bigint,
    finished_at bigint,
    version integer DEFAULT 0 NOT NULL,
    ready_at bigint,
    backoff jsonb,
    timeout_ms bigint,
    failed_upstream integer DEFAULT 0 NOT NULL,
    other_upstream integer DEFAULT 0 NOT NULL,
    attempts_before_retry integer DEFAULT 0 NOT NULL
)
WITH (fillfactor='70');

CREATE TABLE adagio.runs (
    id text NOT NULL COLLATE pg_catalog."C",
    created_at bigint NOT NULL,
    edges jsonb NOT NULL,
    node_count integer NOT NULL,
    remaining integer NOT NULL,
    failed boolean DEFAULT false NOT NULL,
    cancelled boolean DEFAULT false NOT NULL,
    conclusion text,
    finished_at bigint,
    deadline_at bigint,
    name text,
    labels jsonb,
    workflow text COLLATE pg_catalog."C",
    workflow_version integer,
    params jsonb,
    request_id text COLLATE pg_catalog."C",
    deadline_open bigint
)
WITH (fillfactor='70');

CREATE TABLE adagio.schedules (
    name text NOT NULL COLLATE pg_catalog."C",
    workflow text NOT NULL COLLATE pg_catalog."C",
    body jsonb NOT NULL,
    revision bigint NOT NULL
);

CREATE TABLE adagio.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

CREATE TABLE adagio.workflows (
    name text NOT NULL COLLATE pg_catalog."C",
    version integer NOT NULL,
    spec jsonb NOT NULL,
    description text NOT NULL,
    params jsonb NOT NULL,
    content_hash text NOT NULL,
    created_at bigint NOT NULL
);

ALTER TABLE ONLY adagio.agents
    ADD CONSTRAINT agents_pkey PRIMARY KEY (id);

ALTER TABLE ONLY adagio.attempts
    ADD CONSTRAINT attempts_pkey PRIMARY KEY (run_id, node, n);

ALTER TABLE ONLY adagio.counters
    ADD CONSTRAINT counters_pkey PRIMARY KEY (shard);

ALTER TABLE ONLY adagio.leases
    ADD CONSTRAINT leases_pkey PRIMARY KEY (id);

ALTER TABLE ONLY adagio.live_outputs
    ADD CONSTRAINT live_outputs_pkey PRIMARY KEY (run_id, node);

ALTER TABLE ONLY adagio.nodes
    ADD CONSTRAINT nodes_pkey PRIMARY KEY (run_id, name);

ALTER TABLE ONLY adagio.runs
    ADD CONSTRAINT runs_pkey PRIMARY KEY (id);

ALTER TABLE ONLY adagio.schedules
    ADD CONSTRAINT schedules_pkey PRIMARY KEY (name);

ALTER TABLE ONLY adagio.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY adagio.workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (name, version);

CREATE INDEX agents_by_lease ON adagio.agents USING btree (lease_id);

CREATE INDEX attempts_failed ON adagio.attempts USING btree (run_id) WHERE (conclusion = ANY (ARRAY['FAIL'::text, 'ERROR'::text]));

CREATE INDEX nodes_delayed ON adagio.nodes USING btree (ready_at) WHERE ((status = 'READY'::text) AND (ready_at IS NOT NULL));

CREATE INDEX nodes_ready ON adagio.nodes USING btree (runtime, run_id) WHERE (status = 'READY'::text);

CREATE INDEX nodes_running ON adagio.nodes USING btree (run_id) WHERE (status = 'RUNNING'::text);

CREATE INDEX nodes_timed ON adagio.nodes USING btree (((started_at + timeout_ms))) WHERE ((status = 'RUNNING'::text) AND (timeout_ms IS NOT NULL));

CREATE INDEX nodes_waiting ON adagio.nodes USING btree (run_id) WHERE (status = 'WAITING'::text);

CREATE INDEX runs_by_labels ON adagio.runs USING gin (labels jsonb_path_ops) WHERE (labels IS NOT NULL);

CREATE UNIQUE INDEX runs_by_request ON adagio.runs USING btree (request_id) WHERE (request_id IS NOT NULL);

CREATE INDEX runs_by_time ON adagio.runs USING btree (created_at, id);

CREATE INDEX runs_by_workflow ON adagio.runs USING btree (workflow, created_at, id) WHERE (workflow IS NOT NULL);

CREATE INDEX runs_open_deadlines ON adagio.runs USING btree (deadline_open) WHERE (deadline_open IS NOT NULL);

CREATE INDEX schedules_workflow ON adagio.schedules USING btree (workflow);
