import { type FormEvent, useState } from 'react';
import { Run_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { LOOK_LABEL, type NodeLook } from '../api/format.js';
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

/** The look a status badge picked (`?look=`): those nodes stand out in the graph. */
export function useHighlight(): NodeLook | undefined {
  const v = useLocation().query.get('look');
  return v && v in LOOK_LABEL ? (v as NodeLook) : undefined;
}

/** Above the run's body: the view switch and the node search box. */
export function RunToolbar({
  view,
  names,
  onSelect,
}: {
  view: RunView;
  names: readonly string[];
  onSelect: (name: string) => void;
}) {
  return (
    <div className="run-toolbar">
      <RunViewSwitch view={view} />
      <NodeSearch names={names} onSelect={onSelect} />
    </div>
  );
}

// Suggestions shown under the search box: enough to choose from, few enough to render at once on a 10,000-node run.
const MAX_SUGGESTIONS = 20;

/**
 * Finds a node by name: an exact name, else the first name containing the
 * text (case-insensitive). Selecting it opens its panel and centres the graph on it.
 */
function NodeSearch({ names, onSelect }: { names: readonly string[]; onSelect: (name: string) => void }) {
  const [text, setText] = useState('');
  const [missing, setMissing] = useState(false);
  const needle = text.trim().toLowerCase();
  const matches = needle ? matchNames(names, needle) : [];
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const hit = names.includes(text.trim()) ? text.trim() : matches[0];
    setMissing(!hit);
    if (hit) onSelect(hit);
  };
  return (
    <form className="node-search" role="search" aria-label="find a node" onSubmit={submit}>
      <input
        type="search"
        name="node"
        placeholder={`Find a node (${names.length})`}
        aria-label="node name"
        list="node-names"
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          setMissing(false);
          // Picking a suggestion from the list selects it at once.
          if (names.includes(e.target.value)) onSelect(e.target.value);
        }}
      />
      <datalist id="node-names">
        {matches.map((n) => (
          <option key={n} value={n} />
        ))}
      </datalist>
      {missing && <span className="muted">no node matches</span>}
    </form>
  );
}

function matchNames(names: readonly string[], needle: string): string[] {
  const out: string[] = [];
  for (const n of names) {
    if (n.toLowerCase().includes(needle)) out.push(n);
    if (out.length >= MAX_SUGGESTIONS) break;
  }
  return out;
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
  highlight,
}: {
  live: LiveRun;
  view: RunView;
  selected: string | undefined;
  onSelect: (name: string | undefined) => void;
  highlight?: NodeLook | undefined;
}) {
  const shape = live.shape;
  if (!shape) return <div className="run-graph placeholder">{live.error ? '' : 'Loading run…'}</div>;
  return (
    <div className={`run-views view-${view}`}>
      {view !== 'timeline' && (
        <RunGraph
          shape={shape}
          nodes={live.nodes}
          selected={selected}
          onSelect={onSelect}
          highlight={highlight}
        />
      )}
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
