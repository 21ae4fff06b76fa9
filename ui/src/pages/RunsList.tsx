import { useState } from 'react';
import type { Run } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { api } from '../api/client.js';
import { Run_Conclusion, Run_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import type { RunLook } from '../api/format.js';
import { RunsTable } from '../components/RunsTable.js';
import { useLocation, useTitle } from '../router.js';
import { usePolled } from '../state/usePolled.js';

type StatusFilter = 'all' | RunLook;
const STATUSES: StatusFilter[] = ['all', 'waiting', 'running', 'success', 'fail', 'cancelled', 'timed-out'];
const WINDOWS: [string, number][] = [
  ['any time', 0],
  ['last hour', 3600_000],
  ['last 24 hours', 86_400_000],
  ['last 7 days', 7 * 86_400_000],
];
// The server filters (rule 17) but a filtered page may come back short while
// more may match: pages are read until one page of matches is found, but never
// more than this many per click.
const MAX_SCANNED_PAGES = 20;

interface Query {
  status: StatusFilter;
  sinceMs: number;
  untilMs: number;
  limit: number;
  workflow: string;
  /** `key=value` pairs, comma separated. */
  labels: string;
  search: string;
}

/** The server's filter for a state of the UI's list. */
const LOOK_FILTER: Record<RunLook, { status?: Run_Status; conclusion?: Run_Conclusion }> = {
  waiting: { status: Run_Status.WAITING },
  running: { status: Run_Status.RUNNING },
  success: { conclusion: Run_Conclusion.SUCCESS },
  fail: { conclusion: Run_Conclusion.FAIL },
  cancelled: { conclusion: Run_Conclusion.CANCELLED },
  'timed-out': { conclusion: Run_Conclusion.TIMED_OUT },
  completed: { status: Run_Status.COMPLETED },
};

interface Page {
  runs: Run[];
  nextCursor: string;
  scanned: number;
}

const toNs = (ms: number) => BigInt(ms) * 1_000_000n;

/** Runs newest first, filtered by state and creation window, one page at a time. */
export function RunsList() {
  useTitle('Runs');
  const { query: params } = useLocation();
  const [query, setQuery] = useState<Query>({
    status: 'all',
    sinceMs: 0,
    untilMs: 0,
    limit: 25,
    workflow: params.get('workflow') ?? '',
    labels: params.getAll('label').join(','),
    search: params.get('q') ?? '',
  });
  // Cursors of the pages before this one, for "Newer"; the last entry is this page's.
  const [cursors, setCursors] = useState<string[]>(['']);
  const cursor = cursors[cursors.length - 1] ?? '';
  const key = JSON.stringify({ ...query, cursor });
  const page = usePolled(key, (signal) => loadPage(query, cursor, signal), cursors.length === 1 ? 5000 : 0);

  const update = (q: Partial<Query>) => {
    setQuery({ ...query, ...q });
    setCursors(['']);
  };
  return (
    <div className="page">
      <h1>Runs</h1>
      <form className="filters" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input
            type="search"
            name="search"
            placeholder="run id or name"
            value={query.search}
            onChange={(e) => update({ search: e.target.value })}
          />
        </label>
        <label>
          Workflow
          <input
            name="workflow"
            placeholder="any"
            value={query.workflow}
            onChange={(e) => update({ workflow: e.target.value.trim() })}
          />
        </label>
        <label>
          Labels
          <input
            name="labels"
            placeholder="team=data, env=prod"
            value={query.labels}
            onChange={(e) => update({ labels: e.target.value })}
          />
        </label>
        <label>
          State
          <select
            name="status"
            value={query.status}
            onChange={(e) => update({ status: e.target.value as StatusFilter })}
          >
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Created
          <select
            name="window"
            onChange={(e) => {
              const span = Number(e.target.value);
              update({ sinceMs: span ? Date.now() - span : 0, untilMs: 0 });
            }}
          >
            {WINDOWS.map(([label, span]) => (
              <option key={label} value={span}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          From
          <input
            type="datetime-local"
            name="since"
            value={toLocalInput(query.sinceMs)}
            onChange={(e) => update({ sinceMs: fromLocalInput(e.target.value) })}
          />
        </label>
        <label>
          Until
          <input
            type="datetime-local"
            name="until"
            value={toLocalInput(query.untilMs)}
            onChange={(e) => update({ untilMs: fromLocalInput(e.target.value) })}
          />
        </label>
        <label>
          Per page
          <select name="limit" value={query.limit} onChange={(e) => update({ limit: Number(e.target.value) })}>
            {[10, 25, 50, 100].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </form>
      {page.error && <p className="error-box">{page.error}</p>}
      {page.data && <RunsTable runs={page.data.runs} empty="No runs match." />}
      <nav className="pager" aria-label="pages">
        <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors(cursors.slice(0, -1))}>
          ← Newer
        </button>
        <span className="muted">page {cursors.length}</span>
        <button
          type="button"
          disabled={!page.data?.nextCursor}
          onClick={() => page.data?.nextCursor && setCursors([...cursors, page.data.nextCursor])}
        >
          Older →
        </button>
      </nav>
    </div>
  );
}

/** `key=value, key2=value2` as a map; pairs without `=` are left out until typed in full. */
function labelMap(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',').map((s) => s.trim())) {
    const eq = part.indexOf('=');
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

async function loadPage(q: Query, cursor: string, signal: AbortSignal): Promise<Page> {
  const runs: Run[] = [];
  let next = cursor;
  let scanned = 0;
  const look = q.status === 'all' ? {} : LOOK_FILTER[q.status];
  const labels = labelMap(q.labels);
  const filtered =
    q.status !== 'all' || q.workflow !== '' || q.search.trim() !== '' || Object.keys(labels).length > 0;
  do {
    // Ask for no more than the matches still missing: a server page never holds more
    // matches than fit, so the next cursor never skips any.
    const res = await api.listRuns(
      {
        startNs: q.sinceMs ? toNs(q.sinceMs) : 0n,
        finishNs: q.untilMs ? toNs(q.untilMs) : 0n,
        limit: q.limit - runs.length,
        cursor: next,
        workflow: q.workflow,
        labels,
        search: q.search.trim(),
        ...look,
      },
      { signal },
    );
    scanned++;
    runs.push(...res.runs);
    next = res.nextCursor;
    // Without a filter one server page is one UI page; with one, keep reading until a page of matches.
  } while (filtered && runs.length < q.limit && next && scanned < MAX_SCANNED_PAGES);
  return { runs, nextCursor: next, scanned };
}

function toLocalInput(ms: number): string {
  if (!ms) return '';
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function fromLocalInput(v: string): number {
  const t = v ? new Date(v).getTime() : 0;
  return Number.isNaN(t) ? 0 : t;
}
