import { type ExplainNode, explainNode, explainRun } from '../../../src/model/explain.js';
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
import { RunGraph } from '../components/graph/RunGraph.js';
import { NodePanel } from '../components/NodePanel.js';
import { navigate, runPath, useLocation, useTitle } from '../router.js';
import { type LiveRun, useLiveRun } from '../state/useLiveRun.js';

const LOOKS: NodeLook[] = ['waiting', 'ready', 'running', 'orphaned', 'success', 'fail', 'error', 'cancelled', 'skipped'];

/** One run: header with live status and cancel, the graph, and the selected node's panel. */
export function RunPage({ id }: { id: string }) {
  useTitle(`Run ${id}`);
  const live = useLiveRun(id);
  const { query } = useLocation();
  const selected = query.get('node') ?? undefined;
  const select = useCallback(
    (name: string | undefined) =>
      navigate(name ? `${runPath(id)}?node=${encodeURIComponent(name)}` : runPath(id), { replace: true }),
    [id],
  );
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
      {live.error && <p className="error-box run-error">{live.error}</p>}
      <div className="run-body">
        {live.shape ? (
          <RunGraph shape={live.shape} nodes={live.nodes} selected={selected} onSelect={select} />
        ) : (
          <div className="run-graph placeholder">{live.error ? '' : 'Loading run…'}</div>
        )}
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
          <span key={l} className="count">
            <Badge look={l} text={`${counts[l]} ${LOOK_LABEL[l]}`} />
          </span>
        ))}
      </div>
      {live.shape && live.status !== Run_Status.COMPLETED && <CancelButton id={id} onCancelled={live.apply} />}
    </header>
  );
}

function countLooks(nodes: ReadonlyMap<string, Node>): Record<NodeLook, number> {
  const counts = Object.fromEntries(LOOKS.map((l) => [l, 0])) as Record<NodeLook, number>;
  for (const n of nodes.values()) counts[nodeLook(n)]++;
  return counts;
}

/** Cancel asks once more inline (no native dialog), then calls Cancel and shows the result at once. */
function CancelButton({ id, onCancelled }: { id: string; onCancelled: (run: Run) => void }) {
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
  };
}
