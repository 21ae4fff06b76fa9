import type { Workflow } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { api } from '../api/client.js';
import { formatAgo, formatTime } from '../api/format.js';
import { Link, useTitle, workflowPath } from '../router.js';
import { usePolled } from '../state/usePolled.js';

/** Stored workflows (rule 16): each one's latest version, its params and description. */
export function Workflows() {
  useTitle('Workflows');
  const list = usePolled('workflows', (signal) => api.listWorkflows({}, { signal }), 10_000);
  const now = Date.now();
  return (
    <div className="page">
      <h1>Workflows</h1>
      <p className="muted">
        Named, versioned graphs with params. Store one with <code>adagio workflows put FILE</code> or{' '}
        <code>PUT /v0/workflows/NAME</code>; start it from its page.
      </p>
      {list.error && <p className="error-box">{list.error}</p>}
      {list.data && list.data.workflows.length === 0 && <p className="muted empty">No workflows stored yet.</p>}
      {list.data && list.data.workflows.length > 0 && (
        <table className="runs-table workflows-table">
          <thead>
            <tr>
              <th>Workflow</th>
              <th className="num">Version</th>
              <th>Updated</th>
              <th>Params</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {list.data.workflows.map((w) => (
              <tr key={w.name} data-workflow={w.name}>
                <td>
                  <Link to={workflowPath(w.name)} className="mono">
                    {w.name}
                  </Link>
                </td>
                <td className="num">{w.version}</td>
                <td title={formatTime(w.createdAt)}>{formatAgo(w.createdAt, now)}</td>
                <td data-col="params">{paramsText(w) || '–'}</td>
                <td>{w.description.split('\n')[0] || <span className="muted">–</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function paramsText(w: Workflow): string {
  return w.params
    .map((p) => (p.required ? `${p.name} (required)` : p.default ? `${p.name}=${p.default}` : p.name))
    .join(', ');
}
