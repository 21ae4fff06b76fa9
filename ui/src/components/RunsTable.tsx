import type { Run } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { formatAgo, formatDuration, formatTime, runLook } from '../api/format.js';
import { Link, runPath } from '../router.js';
import { Badge } from './Badge.js';

/**
 * Runs as a table: id (a link to the run), name, created, state, how long it
 * took (or runs so far), when it finished, node progress, which nodes failed,
 * and labels.
 */
export function RunsTable({ runs, empty = 'No runs.' }: { runs: Run[]; empty?: string }) {
  if (runs.length === 0) return <p className="muted empty">{empty}</p>;
  const now = Date.now();
  return (
    <table className="runs-table">
      <thead>
        <tr>
          <th>Run</th>
          <th>Name</th>
          <th>Created</th>
          <th>State</th>
          <th className="num">Took</th>
          <th>Finished</th>
          <th>Nodes</th>
          <th>Failed</th>
          <th>Labels</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => {
          const c = r.nodeCounts;
          const running = Number(c?.running ?? 0);
          const total = Number((c?.waiting ?? 0n) + (c?.ready ?? 0n) + (c?.running ?? 0n) + (c?.completed ?? 0n));
          return (
            <tr key={r.id} data-run-id={r.id}>
              <td>
                <Link to={runPath(r.id)} className="mono">
                  {r.id}
                </Link>
              </td>
              <td data-col="name">
                {r.name || <span className="muted">–</span>}
                {r.workflow && r.workflow !== r.name && <span className="muted"> ({r.workflow})</span>}
              </td>
              <td title={formatTime(r.createdAt)}>{formatAgo(r.createdAt, now)}</td>
              <td>
                <Badge look={runLook(r.status, r.conclusion)} />
              </td>
              <td className="num" data-col="took">
                {r.finishedAt
                  ? formatDuration(r.createdAt, r.finishedAt)
                  : `${formatDuration(r.createdAt, new Date(now).toISOString())}…`}
              </td>
              <td data-col="finished" title={r.finishedAt ? formatTime(r.finishedAt) : undefined}>
                {r.finishedAt ? formatAgo(r.finishedAt, now) : '–'}
              </td>
              <td data-col="nodes">
                {String(c?.completed ?? 0)}/{String(total)} done
                {running > 0 && <span className="muted">, {running} running</span>}
              </td>
              <td data-col="failed">
                <FailedNodes run={r} />
              </td>
              <td data-col="labels">
                {Object.keys(r.labels)
                  .sort()
                  .map((k) => (
                    <code key={k} className="label-chip">
                      {k}={r.labels[k]}
                    </code>
                  ))}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** The failed nodes' names (a bounded few, rule 19), each opening that node on the run page; "+N more" for the rest. */
function FailedNodes({ run }: { run: Run }) {
  const more = Number(run.failedNodeCount) - run.failedNodes.length;
  if (run.failedNodes.length === 0 && more <= 0) return <span className="muted">–</span>;
  return (
    <span className="failed-nodes">
      {run.failedNodes.map((name) => (
        <Link key={name} to={`${runPath(run.id)}?node=${encodeURIComponent(name)}`} className="failed-node mono">
          {name}
        </Link>
      ))}
      {more > 0 && <span className="muted">+{more} more</span>}
    </span>
  );
}
