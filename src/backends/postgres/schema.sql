CREATE SCHEMA adagio;

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
    AS $$
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
        AND ((n.status = 'READY' AND (n.ready_at IS NULL OR n.ready_at <= adagio_now_ms()))
             OR (n.status = 'RUNNING' AND n.orphaned)
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
$$;

CREATE FUNCTION adagio.finish_attempt(p_run text, p_node text, p_claim text, p_conclusion text, p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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
$$;

CREATE FUNCTION adagio.finish_started(p_run text, p_node text, p_claim text, p_conclusion text, p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean, p_started bigint) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
DECLARE
  v_result jsonb;
BEGIN
  v_result := finish_timed(p_run, p_node, p_claim, p_conclusion, p_metadata, p_output, p_now, p_repeat);
  IF p_started IS NOT NULL AND v_result ? 'notice' THEN
    -- The finished node's change comes first in the notice (finish_attempt): its attempt count is this attempt.
    UPDATE attempts SET started_at = greatest(started_at, least(p_started, finished_at))
      WHERE run_id = p_run AND node = p_node AND n = (v_result -> 'notice' -> 'ch' -> 0 ->> 'a')::integer
        AND claim_id = p_claim AND started_at IS NOT NULL AND started_at < least(p_started, finished_at);
  END IF;
  RETURN v_result;
END
$$;

CREATE FUNCTION adagio.finish_streamed(p_run text, p_node text, p_claim text, p_conclusion text, p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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
$$;

CREATE FUNCTION adagio.finish_timed(p_run text, p_node text, p_claim text, p_conclusion text, p_metadata jsonb, p_output bytea, p_now bigint, p_repeat boolean) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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

CREATE FUNCTION adagio.settle_dependents(p_run text, p_node text, p_outcome text, p_now bigint) RETURNS jsonb
    LANGUAGE plpgsql
    AS $$
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
);

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
    request_id text COLLATE pg_catalog."C"
);

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

CREATE INDEX runs_deadlines ON adagio.runs USING btree (deadline_at) WHERE ((conclusion IS NULL) AND (deadline_at IS NOT NULL));

CREATE INDEX schedules_workflow ON adagio.schedules USING btree (workflow);
