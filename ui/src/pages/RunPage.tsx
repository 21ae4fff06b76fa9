import { Code, ConnectError } from '@connectrpc/connect';
import { type ExplainNode, explainNode, explainRun, unservedRuntimeWarnings } from '../../../src/model/explain.js';
import { useCallback, useMemo, useState } from 'react';
import { type Node, type Run, Run_Conclusion, Run_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { api, errorMessage } from '../api/client.js';
import {
  conclusionName,
  formatTime,
  LOOK_LABEL,
  type NodeLook,
  nodeLook,
  nodeStatusName,
  runLook,
} from '../api/format.js';
import { Badge } from '../components/Badge.js';
import { NodePanel } from '../components/NodePanel.js';
import { RunToolbar, RunViews, useHighlight, useRunView, withQuery } from '../components/RunViews.js';
import { StartWarnings } from '../components/StartWarnings.js';
import { Link, navigate, runPath, useLocation, useTitle, workflowPath } from '../router.js';
import { rememberStartWarnings } from '../state/startWarnings.js';
import { type LiveRun, type RunShape, useLiveRun } from '../state/useLiveRun.js';

const LOOKS: NodeLook[] = ['waiting', 'ready', 'running', 'orphaned', 'success', 'fail', 'error', 'cancelled', 'skipped'];

/** One run: header with live status and cancel, the graph, and the selected node's panel. */
export function RunPage({ id }: { id: string }) {
  useTitle(`Run ${id}`);
  const live = useLiveRun(id);
  const { query } = useLocation();
  const selected = query.get('node') ?? undefined;
  const select = useCallback(
    (name: string | undefined) =>
      navigate(withQuery('node', name), { replace: true }),
    [],
  );
  const view = useRunView();
  const highlight = useHighlight();
  const selectedNode = selected ? live.nodes.get(selected) : undefined;

  if (live.notFound) {
    return (
      <div className="page">
        <h1>Run not found</h1>
        <p className="error-box">{live.error}</p>
      </div>
    );
  }
  return (
    <div className="run-page">
      <RunHeader id={id} live={live} />
      <RunToolbar view={view} names={live.shape?.names ?? []} onSelect={select} />
      {live.error && <p className="error-box run-error">{live.error}</p>}
      <StartWarnings runId={id} />
      <div className="run-body">
        <RunViews live={live} view={view} selected={selected} onSelect={select} highlight={highlight} />
        {selectedNode && (
          <NodePanel
            runId={id}
            node={selectedNode}
            why={whyOf(selectedNode, live)}
            onClose={() => select(undefined)}
          />
        )}
      </div>
    </div>
  );
}

function RunHeader({ id, live }: { id: string; live: LiveRun }) {
  const counts = useMemo(() => countLooks(live.nodes), [live.nodes]);
  const look = runLook(live.status, live.conclusion);
  return (
    <header className="run-head">
      <div className="run-title">
        <h1>
          Run <code className="run-id">{id}</code>
        </h1>
        {live.shape && <Badge look={look} />}
        {live.live && (
          <span className="live-dot" title="following live">
            live
          </span>
        )}
      </div>
      <div className="run-facts">
        {live.shape && <span className="muted">created {formatTime(live.shape.createdAt)}</span>}
        {live.shape?.deadlineAt && (
          <span className="muted" data-deadline>
            deadline {formatTime(live.shape.deadlineAt)}
          </span>
        )}
        <span className="muted">
          {live.nodes.size} node{live.nodes.size === 1 ? '' : 's'}
        </span>
        {LOOKS.filter((l) => counts[l] > 0).map((l) => (
          <LookFilter key={l} look={l} count={counts[l]} />
        ))}
      </div>
      {live.shape && <RunIdentity identity={live.shape.identity} />}
      {live.shape && live.status !== Run_Status.COMPLETED && (
        <CancelButton id={id} onCancelled={live.apply} onStale={live.follow} />
      )}
      {live.shape && live.status === Run_Status.COMPLETED && (
        <FinishedActions
          id={id}
          retryable={live.conclusion !== Run_Conclusion.SUCCESS}
          onRetried={(run) => {
            live.apply(run);
            live.follow();
          }}
          onStale={live.follow}
        />
      )}
    </header>
  );
}

/**
 * A status count that picks those nodes: the graph dims the others and shows
 * the first of them; a second click lets go.
 */
function LookFilter({ look, count }: { look: NodeLook; count: number }) {
  const active = useHighlight() === look;
  return (
    <button
      type="button"
      className="count"
      aria-pressed={active}
      title={active ? 'show every node' : `pick the ${LOOK_LABEL[look]} nodes`}
      onClick={() => navigate(withQuery('look', active ? undefined : look), { replace: true })}
    >
      <Badge look={look} text={`${count} ${LOOK_LABEL[look]}`} />
    </button>
  );
}

/** Name, workflow, params and labels, those the run has. */
function RunIdentity({ identity: r }: { identity: RunShape['identity'] }) {
  const params = Object.keys(r.params).sort();
  const labels = Object.keys(r.labels).sort();
  if (!r.name && !r.workflow && labels.length === 0) return null;
  return (
    <div className="run-identity">
      {r.name && <span className="run-name">{r.name}</span>}
      {r.workflow && (
        <Link to={workflowPath(r.workflow)} className="muted">
          {r.workflow} v{r.workflowVersion}
        </Link>
      )}
      {params.map((k) => (
        <code key={`p-${k}`} className="node-chip" title="param">
          {k}={r.params[k]}
        </code>
      ))}
      {labels.map((k) => (
        <code key={`l-${k}`} className="label-chip" title="label">
          {k}={r.labels[k]}
        </code>
      ))}
    </div>
  );
}

function countLooks(nodes: ReadonlyMap<string, Node>): Record<NodeLook, number> {
  const counts = Object.fromEntries(LOOKS.map((l) => [l, 0])) as Record<NodeLook, number>;
  for (const n of nodes.values()) counts[nodeLook(n)]++;
  return counts;
}

/**
 * True when the API refused an action because the run is not in the state the
 * page shows (it was retried, cancelled or finished elsewhere): the page is
 * stale and should follow the run again.
 */
function isWrongState(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.FailedPrecondition;
}

/** Cancel asks once more inline (no native dialog), then calls Cancel and shows the result at once. */
function CancelButton({
  id,
  onCancelled,
  onStale,
}: { id: string; onCancelled: (run: Run) => void; onStale: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const cancel = async () => {
    setBusy(true);
    setError(undefined);
    try {
      const res = await api.cancel({ id });
      if (res.run) onCancelled(res.run);
      setConfirming(false);
    } catch (e) {
      setError(errorMessage(e));
      if (isWrongState(e)) onStale();
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="cancel">
      {confirming ? (
        <>
          <span>Cancel this run?</span>
          <button type="button" className="danger" disabled={busy} onClick={cancel}>
            Yes, cancel run
          </button>
          <button type="button" disabled={busy} onClick={() => setConfirming(false)}>
            No
          </button>
        </>
      ) : (
        <button type="button" className="danger" onClick={() => setConfirming(true)}>
          Cancel run
        </button>
      )}
      {error && <span className="error-inline">{error}</span>}
    </div>
  );
}

/**
 * A finished run's actions: Retry (resume it under the same id: the nodes that
 * did not succeed run again; only when it did not succeed) and Rerun (a new
 * run of the same graph, which the page then shows).
 */
function FinishedActions({
  id,
  retryable,
  onRetried,
  onStale,
}: { id: string; retryable: boolean; onRetried: (run: Run) => void; onStale: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const act = async (what: () => Promise<void>) => {
    setBusy(true);
    setError(undefined);
    try {
      await what();
    } catch (e) {
      setError(errorMessage(e));
      if (isWrongState(e)) onStale();
    } finally {
      setBusy(false);
    }
  };
  const retry = () =>
    act(async () => {
      const res = await api.retry({ id });
      if (res.run) onRetried(res.run);
    });
  const rerun = () =>
    act(async () => {
      const res = await api.rerun({ id });
      if (res.run) {
        rememberStartWarnings(res.run.id, await rerunWarnings(res.run));
        navigate(runPath(res.run.id));
      }
    });
  return (
    <div className="cancel">
      {retryable && (
        <button
          type="button"
          disabled={busy}
          onClick={retry}
          title="run the failed, cancelled and unreached nodes again in this run"
        >
          Retry run
        </button>
      )}
      <button type="button" disabled={busy} onClick={rerun} title="start a new run of the same graph">
        Rerun
      </button>
      {error && <span className="error-inline">{error}</span>}
    </div>
  );
}

/**
 * The warnings a Start would have answered for this run (runtimes no live
 * agent serves): Rerun's answer carries none, so they are worked out here with
 * the server's own wording. None when the agents cannot be listed: the rerun
 * itself succeeded.
 */
async function rerunWarnings(run: Run): Promise<string[]> {
  try {
    const { agents } = await api.listAgents({});
    return unservedRuntimeWarnings(
      run.nodes.map((n) => ({ name: n.spec?.name ?? '', runtime: n.spec?.runtime ?? '' })),
      agents,
    );
  } catch {
    return [];
  }
}

/** Why the selected node waits or was not run (explainNode, as `adagio runs inspect` says it). */
function whyOf(node: Node, live: LiveRun): string | undefined {
  if (!live.shape) return undefined;
  const run = explainRun(
    [...live.nodes.values()].map(toExplain),
    live.shape.edges,
    live.conclusion === Run_Conclusion.CANCELLED || live.conclusion === Run_Conclusion.TIMED_OUT,
  );
  return explainNode(toExplain(node), run);
}

function toExplain(n: Node): ExplainNode {
  return {
    name: n.spec?.name ?? '',
    runtime: n.spec?.runtime ?? '',
    status: nodeStatusName(n.status) as ExplainNode['status'],
    attempts: n.attempts.map((a) => conclusionName(a.conclusion)),
    ...(n.nextAttemptAt ? { nextAttemptAt: formatTime(n.nextAttemptAt) } : {}),
    trigger: n.spec?.trigger,
  };
}
