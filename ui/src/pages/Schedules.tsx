import { useState } from 'react';
import type { Schedule } from '../../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import { api, errorMessage } from '../api/client.js';
import { formatIn, formatTime } from '../api/format.js';
import { RunsTable } from '../components/RunsTable.js';
import { Link, runPath, schedulePath, useTitle, workflowPath } from '../router.js';
import { usePolled } from '../state/usePolled.js';

/** Schedules (rule 18): each one's cron, state and next slot, with pause and resume. */
export function Schedules() {
  useTitle('Schedules');
  const list = usePolled('schedules', (signal) => api.listSchedules({}, { signal }), 5_000);
  const now = Date.now();
  return (
    <div className="page">
      <h1>Schedules</h1>
      <p className="muted">
        Workflows started on a cron, each slot exactly once. Store one with <code>adagio schedules put FILE</code> or{' '}
        <code>PUT /v0/schedules/NAME</code>.
      </p>
      {list.error && <p className="error-box">{list.error}</p>}
      {list.data && list.data.schedules.length === 0 && <p className="muted empty">No schedules stored yet.</p>}
      {list.data && list.data.schedules.length > 0 && (
        <table className="runs-table schedules-table">
          <thead>
            <tr>
              <th>Schedule</th>
              <th>Workflow</th>
              <th>Cron</th>
              <th>Overlap</th>
              <th>Catch-up</th>
              <th>State</th>
              <th>Next slot</th>
              <th>
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data.schedules.map((s) => (
              <tr key={s.name} data-schedule={s.name}>
                <td>
                  <Link to={schedulePath(s.name)} className="mono">
                    {s.name}
                  </Link>
                </td>
                <td>
                  <Link to={workflowPath(s.workflow)}>{s.workflow}</Link>
                </td>
                <td className="mono">
                  {s.cron} <span className="muted">({s.timezone})</span>
                </td>
                <td>{s.overlap}</td>
                <td data-col="catchup">{s.catchup || "–"}</td>
                <td data-col="state">{s.paused ? 'paused' : 'active'}</td>
                <td data-col="next" title={formatTime(s.nextSlot)}>
                  {s.paused ? '–' : formatIn(s.nextSlot, now)}
                </td>
                <td>
                  <PauseButton schedule={s} onDone={list.reload} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function PauseButton({ schedule, onDone }: { schedule: Schedule; onDone: () => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const toggle = async () => {
    setBusy(true);
    setError(undefined);
    try {
      if (schedule.paused) await api.resumeSchedule({ name: schedule.name });
      else await api.pauseSchedule({ name: schedule.name });
      onDone();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" disabled={busy} onClick={toggle}>
        {schedule.paused ? 'Resume' : 'Pause'}
      </button>
      {error && <span className="error-box">{error}</span>}
    </>
  );
}

/** One schedule: its definition, next fire times, recent runs and the slots it did not start. */
export function SchedulePage({ name }: { name: string }) {
  useTitle(`Schedule ${name}`);
  const view = usePolled(`schedule:${name}`, (signal) => api.getSchedule({ name }, { signal }), 5_000);
  const [triggered, setTriggered] = useState<string>();
  const [error, setError] = useState<string>();
  const s = view.data?.schedule;
  const trigger = async () => {
    setError(undefined);
    try {
      const res = await api.triggerSchedule({ name });
      setTriggered(res.run?.id);
      view.reload();
    } catch (e) {
      setError(errorMessage(e));
    }
  };
  const notStarted = s?.history.filter((h) => h.outcome !== 'started') ?? [];
  return (
    <div className="page">
      <h1>
        Schedule <span className="mono">{name}</span>
      </h1>
      {view.error && <p className="error-box">{view.error}</p>}
      {error && <p className="error-box">{error}</p>}
      {s && (
        <>
          <p>
            <Link to={workflowPath(s.workflow)}>{s.workflow}</Link> on <code>{s.cron}</code> ({s.timezone}), overlap{' '}
            {s.overlap}, catch-up {s.catchup}; <span data-col="state">{s.paused ? 'paused' : 'active'}</span>{' '}
            <PauseButton schedule={s} onDone={view.reload} />{' '}
            <button type="button" onClick={trigger}>
              Trigger now
            </button>
            {triggered && (
              <>
                {' '}
                started{' '}
                <Link to={runPath(triggered)} className="mono triggered-run">
                  {triggered}
                </Link>
              </>
            )}
          </p>
          {Object.keys(s.params).length > 0 && (
            <p className="muted">
              params:{' '}
              {Object.entries(s.params)
                .map(([k, v]) => `${k}=${v}`)
                .join(', ')}
            </p>
          )}
          <h2>Next fire times</h2>
          <ul className="next-slots">
            {view.data!.nextSlots.map((t) => (
              <li key={t} title={t}>
                {formatTime(t)}
              </li>
            ))}
          </ul>
          <h2>Recent runs</h2>
          <RunsTable runs={view.data!.recentRuns} empty="No runs yet." />
          {notStarted.length > 0 && (
            <>
              <h2>Slots not started</h2>
              <table className="runs-table missed-table">
                <tbody>
                  {notStarted.map((h) => (
                    <tr key={h.slot}>
                      <td className="mono">{h.slot}</td>
                      <td>{h.outcome}</td>
                      <td>{h.error || ''}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          )}
        </>
      )}
    </div>
  );
}
