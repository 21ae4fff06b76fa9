import { api } from '../api/client.js';
import { formatAgo } from '../api/format.js';
import { RunsTable } from '../components/RunsTable.js';
import { Link, useTitle } from '../router.js';
import { usePolled } from '../state/usePolled.js';

const REFRESH_MS = 3000;

/** The landing page: totals, live agents, the newest runs. Refreshes every few seconds. */
export function Overview() {
  useTitle('Overview');
  const stats = usePolled('stats', (signal) => api.stats({}, { signal }), REFRESH_MS);
  const agents = usePolled('agents', (signal) => api.listAgents({}, { signal }), REFRESH_MS);
  const runs = usePolled('recent', (signal) => api.listRuns({ limit: 10 }, { signal }), REFRESH_MS);
  const s = stats.data?.stats;
  return (
    <div className="page">
      <h1>Overview</h1>
      {stats.error && <p className="error-box">{stats.error}</p>}
      <section className="stat-cards" aria-label="stats">
        <Stat label="Runs" value={s?.runCount} />
        <Stat label="Waiting nodes" value={s?.waitingNodes} />
        <Stat label="Ready nodes" value={s?.readyNodes} />
        <Stat label="Running nodes" value={s?.runningNodes} />
        <Stat label="Completed nodes" value={s?.completedNodes} />
      </section>

      <section>
        <h2>Agents</h2>
        {agents.error && <p className="error-box">{agents.error}</p>}
        {agents.data && agents.data.agents.length === 0 && (
          <p className="muted">No agents connected: runs will wait until one registers.</p>
        )}
        {agents.data && agents.data.agents.length > 0 && (
          <table className="agents-table">
            <thead>
              <tr>
                <th>Agent</th>
                <th>Host</th>
                <th>Runtimes</th>
                <th>Started</th>
              </tr>
            </thead>
            <tbody>
              {agents.data.agents.map((a) => (
                <tr key={a.id}>
                  <td className="mono">{a.id}</td>
                  <td>{a.hostname}</td>
                  <td>{a.runtimes.map((r) => r.name).join(', ')}</td>
                  <td>{formatAgo(a.startedAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section>
        <div className="section-head">
          <h2>Recent runs</h2>
          <Link to="/runs">All runs →</Link>
          <Link to="/start" className="button primary">
            Start a run
          </Link>
        </div>
        {runs.error && <p className="error-box">{runs.error}</p>}
        {runs.data && <RunsTable runs={runs.data.runs} empty="No runs yet. Start one!" />}
      </section>
    </div>
  );
}

function Stat({ label, value }: { label: string; value: bigint | undefined }) {
  return (
    <div className="stat-card">
      <div className="stat-value">{value === undefined ? '–' : value.toLocaleString()}</div>
      <div className="stat-label">{label}</div>
    </div>
  );
}
