import { type FormEvent, useState } from 'react';
import type { Workflow } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { api, errorMessage } from '../api/client.js';
import { formatTime } from '../api/format.js';
import { Link, navigate, runPath, useLocation, useTitle, workflowPath } from '../router.js';
import { rememberStartWarnings } from '../state/startWarnings.js';
import { usePolled } from '../state/usePolled.js';

/**
 * One workflow: its versions (pick one), description, params and graph, and
 * a form that starts it with a value for each param, a run name and labels.
 */
export function WorkflowPage({ name }: { name: string }) {
  useTitle(name);
  const { query } = useLocation();
  const version = Number(query.get('version') ?? 0) || 0;
  const versions = usePolled(`versions:${name}`, (signal) => api.listWorkflowVersions({ name }, { signal }));
  const all = versions.data?.workflows ?? [];
  const shown = version ? all.find((w) => w.version === version) : all[0];
  return (
    <div className="page workflow-page">
      <h1 className="workflow-title">
        <span className="mono">{name}</span>
        {shown && <span className="muted"> version {shown.version}</span>}
      </h1>
      {versions.error && <p className="error-box">{versions.error}</p>}
      {all.length > 0 && (
        <label className="version-pick">
          Version{' '}
          <select
            name="version"
            value={shown?.version ?? ''}
            onChange={(e) => navigate(`${workflowPath(name)}?version=${e.target.value}`, { replace: true })}
          >
            {all.map((w, i) => (
              <option key={w.version} value={w.version}>
                {w.version}
                {i === 0 ? ' (latest)' : ''} · {formatTime(w.createdAt)}
              </option>
            ))}
          </select>
        </label>
      )}
      {version > 0 && all.length > 0 && !shown && <p className="error-box">No version {version} of {name}.</p>}
      {shown && <Definition w={shown} />}
      {shown && <StartForm key={`${shown.name}@${shown.version}`} w={shown} latest={shown === all[0]} />}
      <p>
        <Link to={`/runs?workflow=${encodeURIComponent(name)}`}>Runs of this workflow →</Link>
      </p>
    </div>
  );
}

function Definition({ w }: { w: Workflow }) {
  return (
    <section className="workflow-definition">
      {w.description ? <p className="description">{w.description}</p> : <p className="muted">No description.</p>}
      <h2>Params</h2>
      {w.params.length === 0 ? (
        <p className="muted">None.</p>
      ) : (
        <table className="params-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Required</th>
              <th>Default</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {w.params.map((p) => (
              <tr key={p.name}>
                <td className="mono">{p.name}</td>
                <td>{p.required ? 'yes' : 'no'}</td>
                <td>{p.default !== undefined ? <code>{p.default}</code> : '–'}</td>
                <td>{p.description || '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Graph</h2>
      <p>
        {w.spec?.nodes.length ?? 0} nodes:{' '}
        {w.spec?.nodes.map((n) => (
          <code key={n.name} className="node-chip">
            {n.name} ({n.runtime})
          </code>
        ))}
      </p>
      {(w.spec?.edges.length ?? 0) > 0 && (
        <p className="muted">{w.spec?.edges.map((e) => `${e.source} → ${e.destination}`).join(', ')}</p>
      )}
    </section>
  );
}

/** Labels typed as `key=value` pairs separated by commas or new lines. */
function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error(`label "${part}" must be key=value`);
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return labels;
}

function StartForm({ w, latest }: { w: Workflow; latest: boolean }) {
  const [values, setValues] = useState<Record<string, string>>({});
  const [runName, setRunName] = useState('');
  const [labels, setLabels] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  // Own keys only: a param may be named like an Object.prototype member ("constructor").
  const valueOf = (param: string) => (Object.hasOwn(values, param) ? (values[param] ?? '') : '');
  const missing = w.params.filter((p) => p.required && !valueOf(p.name)).map((p) => p.name);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(undefined);
    setBusy(true);
    try {
      // Only the params filled in: the others take their defaults on the server.
      const params = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== ''));
      const res = await api.start({
        workflow: w.name,
        // The version shown, even when it is the latest: a newer one stored since must not start unseen.
        version: w.version,
        params,
        name: runName,
        labels: parseLabels(labels),
      });
      if (res.run) {
        rememberStartWarnings(res.run.id, res.warnings);
        navigate(runPath(res.run.id));
      }
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form className="start-workflow" aria-label="start this workflow" onSubmit={submit}>
      <h2>
        Start version {w.version}
        {latest ? ' (the latest)' : ''}
      </h2>
      {w.params.map((p) => (
        <label key={p.name} className="param-field">
          <span>
            {p.name}
            {p.required && <span className="required"> (required)</span>}
            {p.description && <span className="muted"> — {p.description}</span>}
          </span>
          <input
            name={`param-${p.name}`}
            value={valueOf(p.name)}
            placeholder={p.default ?? ''}
            required={p.required}
            onChange={(e) => setValues({ ...values, [p.name]: e.target.value })}
          />
        </label>
      ))}
      <label className="param-field">
        <span>Run name <span className="muted">(default: {w.name})</span></span>
        <input name="run-name" value={runName} onChange={(e) => setRunName(e.target.value)} />
      </label>
      <label className="param-field">
        <span>Labels <span className="muted">(key=value, comma separated)</span></span>
        <input name="labels" value={labels} placeholder="team=data" onChange={(e) => setLabels(e.target.value)} />
      </label>
      {error && <p className="error-box">{error}</p>}
      <button type="submit" className="primary" disabled={busy || missing.length > 0}>
        {busy ? 'Starting…' : 'Start run'}
      </button>
      {missing.length > 0 && <p className="muted">Fill in {missing.join(', ')} to start.</p>}
    </form>
  );
}
