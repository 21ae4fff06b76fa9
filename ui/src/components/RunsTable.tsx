import type { Run } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { formatAgo, formatTime, runLook } from '../api/format.js';
import { Link, runPath } from '../router.js';
import { Badge } from './Badge.js';

/** Runs as a table: id (a link to the run), created, state, node counts. */
export function RunsTable({ runs, empty = 'No runs.' }: { runs: Run[]; empty?: string }) {
  if (runs.length === 0) return <p className="muted empty">{empty}</p>;
  const now = Date.now();
  return (
    <table className="runs-table">
      <thead>
        <tr>
          <th>Run</th>
          <th>Created</th>
          <th>State</th>
          <th className="num">Waiting</th>
          <th className="num">Ready</th>
          <th className="num">Running</th>
          <th className="num">Completed</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => {
          const c = r.nodeCounts;
          return (
            <tr key={r.id} data-run-id={r.id}>
              <td>
                <Link to={runPath(r.id)} className="mono">
                  {r.id}
                </Link>
              </td>
              <td title={formatTime(r.createdAt)}>{formatAgo(r.createdAt, now)}</td>
              <td>
                <Badge look={runLook(r.status, r.conclusion)} />
              </td>
              <td className="num">{String(c?.waiting ?? 0)}</td>
              <td className="num">{String(c?.ready ?? 0)}</td>
              <td className="num">{String(c?.running ?? 0)}</td>
              <td className="num">{String(c?.completed ?? 0)}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
