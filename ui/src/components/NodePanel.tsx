import { type Node, Node_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { formatDuration, formatMs, formatTime, nodeLook, nodeStatusName, splitMetadata } from '../api/format.js';
import { backoffText } from '../../../src/model/explain.js';
import { useNow } from '../state/useNow.js';
import { Attempts, Output } from './Attempts.js';
import { Badge } from './Badge.js';
import { KeyValues, metadataEntries } from './KeyValues.js';

/** Everything about one node: spec (runtime, arguments), attempts, inputs, claim. */
export function NodePanel({
  runId,
  node,
  why,
  onClose,
}: { runId: string; node: Node; why?: string; onClose: () => void }) {
  const now = useNow(node.status === Node_Status.RUNNING ? 1000 : 0);
  const spec = node.spec;
  const runtime = spec?.runtime ?? '';
  const meta = splitMetadata(runtime, spec?.metadata ?? {});
  const retry = Object.keys(spec?.retry ?? {})
    .sort()
    .map((k): [string, string[]] => {
      const r = spec?.retry[k];
      const b = r?.backoff;
      return [k, [`max ${r?.maxAttempts ?? 0} attempts`, ...(b ? [`backoff ${backoffText(b)}`] : [])]];
    });
  const inputs = [...new Set([...Object.keys(node.inputs), ...Object.keys(node.omittedInputs)])].sort();
  return (
    <aside className="node-panel" aria-label="node details">
      <header className="panel-head">
        <h2 className="panel-title">{spec?.name ?? '(unnamed)'}</h2>
        <button type="button" className="icon-button" onClick={onClose} aria-label="close node panel">
          ×
        </button>
      </header>
      <div className="panel-summary">
        <Badge look={nodeLook(node)} />
        <span className="muted">{nodeStatusName(node.status).toLowerCase()}</span>
        {node.startedAt && <span className="muted">started {formatTime(node.startedAt)}</span>}
        {node.status === Node_Status.RUNNING && node.startedAt && (
          <span className="muted" data-elapsed>
            running for {formatDuration(node.startedAt, new Date(now).toISOString())}
          </span>
        )}
        {node.finishedAt && node.startedAt && (
          <span className="muted">took {formatDuration(node.startedAt, node.finishedAt)}</span>
        )}
        {node.nextAttemptAt && (
          <span className="muted" data-next-attempt>
            next attempt due {formatTime(node.nextAttemptAt)}
          </span>
        )}
        {node.attemptsBeforeRetry > 0 && (
          <span className="muted" data-retried>
            run retried after attempt {node.attemptsBeforeRetry}
          </span>
        )}
        {attemptCount(node) > 1 && (
          <span className="muted" data-total>
            {attemptCount(node)} attempts, {formatMs(attemptsTotalMs(node, now))} in all
          </span>
        )}
      </div>

      {why && (
        <p className="node-why" data-why>
          {why}
        </p>
      )}

      <section>
        <h3>Spec</h3>
        <KeyValues
          entries={[
            ['runtime', [runtime]],
            // Rule 14: when the node runs, judged from how its upstream nodes completed.
            ['trigger', [spec?.trigger || 'all_success']],
            ...(spec?.timeout ? ([['timeout', [spec.timeout]]] as [string, string[]][]) : []),
          ]}
        />
        <h4>Arguments</h4>
        <KeyValues entries={meta.args} empty="No arguments." />
        {meta.inputs.length > 0 && (
          <>
            <h4>Arguments from upstream outputs</h4>
            <KeyValues entries={meta.inputs} />
          </>
        )}
        {retry.length > 0 && (
          <>
            <h4>Retry</h4>
            <KeyValues entries={retry} />
          </>
        )}
        {meta.other.length > 0 && (
          <>
            <h4>Other metadata</h4>
            <KeyValues entries={meta.other} />
          </>
        )}
      </section>

      {node.status === Node_Status.RUNNING && (
        <section aria-label="live output">
          <h3>Attempt {node.attempts.length + 1}: running</h3>
          <Output bytes={node.liveOutput} label="output yet" />
        </section>
      )}

      <section>
        <h3>Attempts ({node.attempts.length})</h3>
        <Attempts runId={runId} node={spec?.name ?? ''} attempts={node.attempts} />
      </section>

      <section>
        <h3>Inputs</h3>
        {inputs.length === 0 ? (
          <p className="muted">No inputs.</p>
        ) : (
          inputs.map((name) => (
            <div key={name} className="input">
              <div className="input-name">from {name}</div>
              {node.omittedInputs[name] !== undefined ? (
                // Left out of this read by its output budget: it is node `name`'s output, read on that node.
                <p className="muted">
                  {Number(node.omittedInputs[name]).toLocaleString('en-US')} bytes, left out of this page's read:
                  it is the output of node {name}; open that node to load it.
                </p>
              ) : (
                <Output bytes={node.inputs[name] ?? new Uint8Array()} label="input" />
              )}
            </div>
          ))
        )}
      </section>

      <section>
        <h3>Claim</h3>
        {node.claim?.id ? (
          <KeyValues
            entries={[
              ['id', [node.claim.id]],
              ['agent', [node.claim.agentId]],
              ...(node.claim.orphaned ? ([['orphaned', ['yes: its lease lapsed']]] as [string, string[]][]) : []),
              ...metadataEntries(node.claim.metadata),
            ]}
          />
        ) : (
          <p className="muted">Not claimed.</p>
        )}
      </section>
    </aside>
  );
}

/** Attempts made, the running one included. */
function attemptCount(node: Node): number {
  return node.attempts.length + (node.status === Node_Status.RUNNING ? 1 : 0);
}

/** Time spent in the node's attempts, retries included, and the running one so far. */
function attemptsTotalMs(node: Node, now: number): number {
  let total = node.status === Node_Status.RUNNING && node.startedAt ? Math.max(0, now - Date.parse(node.startedAt)) : 0;
  for (const a of node.attempts) {
    const ms = Date.parse(a.finishedAt) - Date.parse(a.startedAt);
    if (Number.isFinite(ms) && ms > 0) total += ms;
  }
  return total;
}
