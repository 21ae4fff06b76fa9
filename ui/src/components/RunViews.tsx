import { Run_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { navigate, useLocation } from '../router.js';
import type { LiveRun } from '../state/useLiveRun.js';
import { RunGraph } from './graph/RunGraph.js';
import { Timeline } from './Timeline.js';

export type RunView = 'graph' | 'timeline' | 'split';
const VIEWS: [RunView, string][] = [
  ['graph', 'Graph'],
  ['timeline', 'Timeline'],
  ['split', 'Both'],
];

/** The view the URL asks for (`?view=`), so a link or a reload keeps it. */
export function useRunView(): RunView {
  const v = useLocation().query.get('view');
  return v === 'timeline' || v === 'split' ? v : 'graph';
}

/** The URL with one query parameter set (or removed when empty), the others kept. */
export function withQuery(key: string, value: string | undefined): string {
  const q = new URLSearchParams(window.location.search);
  if (value) q.set(key, value);
  else q.delete(key);
  const s = q.toString();
  return `${window.location.pathname}${s ? `?${s}` : ''}`;
}

/** Graph / timeline / both: a segmented switch above the run's body. */
export function RunViewSwitch({ view }: { view: RunView }) {
  return (
    <div className="view-switch" role="tablist" aria-label="run view">
      {VIEWS.map(([v, label]) => (
        <button
          key={v}
          type="button"
          role="tab"
          aria-selected={v === view}
          className={v === view ? 'active' : undefined}
          onClick={() => navigate(withQuery('view', v === 'graph' ? undefined : v), { replace: true })}
        >
          {label}
        </button>
      ))}
    </div>
  );
}

/** The run's graph, its timeline, or both stacked (graph above), as the view switch says. */
export function RunViews({
  live,
  view,
  selected,
  onSelect,
}: {
  live: LiveRun;
  view: RunView;
  selected: string | undefined;
  onSelect: (name: string | undefined) => void;
}) {
  const shape = live.shape;
  if (!shape) return <div className="run-graph placeholder">{live.error ? '' : 'Loading run…'}</div>;
  return (
    <div className={`run-views view-${view}`}>
      {view !== 'timeline' && <RunGraph shape={shape} nodes={live.nodes} selected={selected} onSelect={onSelect} />}
      {view !== 'graph' && (
        <Timeline
          names={shape.names}
          nodes={live.nodes}
          createdAt={shape.createdAt}
          running={live.status !== Run_Status.COMPLETED}
          selected={selected}
          onSelect={onSelect}
        />
      )}
    </div>
  );
}
