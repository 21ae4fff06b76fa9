import { useState } from 'react';
import type { Attempt } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { EXIT_CODE_KEY, METADATA_LABELS } from '../../../src/model/labels.js';
import { api, errorMessage } from '../api/client.js';
import { bytesToText, conclusionLook, formatDuration, formatTime } from '../api/format.js';
import { Badge } from './Badge.js';
import { KeyValues, metadataEntries } from './KeyValues.js';

/** A node's attempts, newest first, each with timing and its output shown as plain text. */
export function Attempts({ runId, node, attempts }: { runId: string; node: string; attempts: Attempt[] }) {
  if (attempts.length === 0) return <p className="muted">No attempts yet.</p>;
  const numbered = attempts.map((a, i) => ({ a, n: i + 1 })).reverse();
  return (
    <ol className="attempts">
      {numbered.map(({ a, n }) => (
        <li key={n} className="attempt" data-attempt={n}>
          <div className="attempt-head">
            <span className="attempt-number">#{n}</span>
            <Badge look={conclusionLook(a.conclusion)} />
            <span className="muted">{formatTime(a.startedAt)}</span>
            {a.finishedAt && <span className="muted">{formatDuration(a.startedAt, a.finishedAt)}</span>}
            {a.metadata[EXIT_CODE_KEY]?.values[0] && (
              <span className="exit-code" data-exit-code>
                exit code {a.metadata[EXIT_CODE_KEY]?.values[0]}
              </span>
            )}
          </div>
          <div className="attempt-ids muted">
            {a.agentId && <span>agent {a.agentId}</span>}
            {a.claimId && <span>claim {a.claimId}</span>}
          </div>
          {a.outputOmitted ? (
            <OmittedOutput runId={runId} node={node} attempt={n} size={Number(a.outputSize)} />
          ) : (
            <Output bytes={a.output} />
          )}
          {otherMetadata(a).length > 0 && <KeyValues entries={otherMetadata(a)} />}
        </li>
      ))}
    </ol>
  );
}

/** An attempt's metadata but the keys shown with a label of their own (the exit code). */
function otherMetadata(a: Attempt): [string, string[]][] {
  return metadataEntries(a.metadata).filter(([k]) => !(k in METADATA_LABELS));
}

/** An output the API left out of the run (over its read budget): fetched on request. */
function OmittedOutput({ runId, node, attempt, size }: { runId: string; node: string; attempt: number; size: number }) {
  const [state, setState] = useState<{ bytes?: Uint8Array; error?: string; loading?: boolean }>({});
  if (state.bytes) return <Output bytes={state.bytes} />;
  const load = () => {
    setState({ loading: true });
    api
      .getAttemptOutput({ runId, node, attempt })
      .then((r) => setState({ bytes: r.output }))
      .catch((e: unknown) => setState({ error: errorMessage(e) }));
  };
  return (
    <p className="muted">
      Output of {size} bytes not loaded.{' '}
      <button type="button" onClick={load} disabled={state.loading} data-load-output={attempt}>
        {state.loading ? 'Loading…' : 'Load output'}
      </button>
      {state.error && <span className="error"> {state.error}</span>}
    </p>
  );
}

/** Bytes as text inside <pre>: React escapes it, so markup in an output is shown, never run. */
export function Output({ bytes, label = 'output' }: { bytes: Uint8Array; label?: string }) {
  const text = bytesToText(bytes);
  if (!text) return <p className="muted">(no {label})</p>;
  return <pre className="output">{text}</pre>;
}
