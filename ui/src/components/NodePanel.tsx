import type { Node } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { formatDuration, formatTime, nodeLook, nodeStatusName, splitMetadata } from '../api/format.js';
import { Attempts, Output } from './Attempts.js';
import { Badge } from './Badge.js';
import { KeyValues, metadataEntries } from './KeyValues.js';

/** Everything about one node: spec (runtime, arguments), attempts, inputs, claim. */
export function NodePanel({ runId, node, onClose }: { runId: string; node: Node; onClose: () => void }) {
  const spec = node.spec;
  const runtime = spec?.runtime ?? '';
  const meta = splitMetadata(runtime, spec?.metadata ?? {});
  const retry = Object.keys(spec?.retry ?? {})
    .sort()
    .map((k): [string, string[]] => [k, [`max ${spec?.retry[k]?.maxAttempts ?? 0} attempts`]]);
  const inputs = Object.keys(node.inputs).sort();
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
        {node.finishedAt && <span className="muted">took {formatDuration(node.startedAt, node.finishedAt)}</span>}
      </div>

      <section>
        <h3>Spec</h3>
        <KeyValues entries={[['runtime', [runtime]]]} />
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
              <Output bytes={node.inputs[name] ?? new Uint8Array()} label="input" />
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
