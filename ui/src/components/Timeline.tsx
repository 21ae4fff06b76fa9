import { memo, useEffect, useMemo, useRef, useState } from 'react';
import { type Node, Node_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { conclusionLook, conclusionName, formatDuration, formatMs, type NodeLook } from '../api/format.js';
import { useNow } from '../state/useNow.js';

/** One bar: an attempt (retries included), or the attempt running now. */
export interface Bar {
  /** 1-based attempt number. */
  n: number;
  startMs: number;
  /** Undefined while running: the bar grows with the clock. */
  endMs: number | undefined;
  look: NodeLook;
  label: string;
}

export interface Row {
  name: string;
  bars: Bar[];
}

// Fixed row height: lets the list render only the rows in view, so 10,000 nodes scroll as smoothly as 10.
const ROW_HEIGHT = 24;
// Rows drawn above and below the visible ones, so a fast scroll does not show blank rows.
const OVERSCAN = 10;
const TICK_STEPS_MS = [
  100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000,
  1_800_000, 3_600_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000,
];
const MAX_TICKS = 8;

/**
 * The rows of a timeline: every node that has started, ordered by when it
 * first started (then by name), each with a bar per attempt. Pure, so the
 * ordering and the running bar are tested without a browser.
 */
export function timelineRows(names: readonly string[], nodes: ReadonlyMap<string, Node>): Row[] {
  const rows: (Row & { first: number })[] = [];
  for (const name of names) {
    const node = nodes.get(name);
    if (!node) continue;
    const bars: Bar[] = node.attempts.map((a, i) => {
      const startMs = Date.parse(a.startedAt);
      const endMs = Date.parse(a.finishedAt);
      return {
        n: i + 1,
        startMs,
        endMs: Number.isFinite(endMs) ? endMs : startMs,
        look: conclusionLook(a.conclusion),
        label: `${name} #${i + 1}: ${conclusionName(a.conclusion).toLowerCase()}, ${formatDuration(a.startedAt, a.finishedAt) || '0 ms'}`,
      };
    });
    if (node.status === Node_Status.RUNNING && node.startedAt)
      bars.push({
        n: node.attempts.length + 1,
        startMs: Date.parse(node.startedAt),
        endMs: undefined,
        look: node.claim?.orphaned ? 'orphaned' : 'running',
        label: `${name} #${node.attempts.length + 1}: running`,
      });
    const valid = bars.filter((b) => Number.isFinite(b.startMs));
    if (valid.length > 0) rows.push({ name, bars: valid, first: valid[0]!.startMs });
  }
  rows.sort((a, b) => a.first - b.first || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return rows.map(({ name, bars }) => ({ name, bars }));
}

/** Evenly spaced ticks at a round step, at most MAX_TICKS of them. */
function ticks(spanMs: number): number[] {
  const step = TICK_STEPS_MS.find((s) => spanMs / s <= MAX_TICKS) ?? spanMs / MAX_TICKS;
  const out: number[] = [];
  for (let t = 0; t <= spanMs; t += step) out.push(t);
  return out;
}

function tickLabel(ms: number): string {
  if (ms === 0) return '0';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${ms / 1000} s`;
  if (ms < 3_600_000)
    return `${Math.floor(ms / 60_000)} min${ms % 60_000 ? ` ${(ms % 60_000) / 1000} s` : ''}`;
  return `${Math.floor(ms / 3_600_000)} h${ms % 3_600_000 ? ` ${Math.floor((ms % 3_600_000) / 60_000)} min` : ''}`;
}

interface Props {
  names: readonly string[];
  nodes: ReadonlyMap<string, Node>;
  /** Run creation time (RFC 3339): the timeline's zero. */
  createdAt: string;
  /** False once the run completed: the clock stops, the right edge is the last attempt's end. */
  running: boolean;
  selected: string | undefined;
  onSelect: (name: string | undefined) => void;
}

/**
 * A Gantt chart of the run's attempts: one row per started node, one bar per
 * attempt coloured by how it ended, the running one growing with the clock.
 */
export function Timeline({ names, nodes, createdAt, running, selected, onSelect }: Props) {
  const rows = useMemo(() => timelineRows(names, nodes), [names, nodes]);
  const now = useNow(running ? 1000 : 0);
  const t0 = useMemo(() => {
    let min = Date.parse(createdAt);
    for (const r of rows) min = Math.min(min, r.bars[0]!.startMs);
    return Number.isFinite(min) ? min : now;
  }, [rows, createdAt, now]);
  let t1 = t0;
  for (const r of rows) for (const b of r.bars) t1 = Math.max(t1, b.endMs ?? now);
  if (running) t1 = Math.max(t1, now);
  const span = Math.max(1, t1 - t0);

  const scroller = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ top: 0, height: 600 });
  useEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setView({ top: el.scrollTop, height: el.clientHeight });
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    el.addEventListener('scroll', measure, { passive: true });
    return () => {
      observer.disconnect();
      el.removeEventListener('scroll', measure);
    };
  }, []);
  // Bring the selected node's row into view (chosen in the graph, or by search).
  useEffect(() => {
    const el = scroller.current;
    const i = selected === undefined ? -1 : rows.findIndex((r) => r.name === selected);
    if (!el || i < 0) return;
    const y = i * ROW_HEIGHT;
    if (y < el.scrollTop || y + ROW_HEIGHT > el.scrollTop + el.clientHeight)
      el.scrollTop = Math.max(0, y - el.clientHeight / 2);
  }, [selected, rows]);

  const from = Math.max(0, Math.floor(view.top / ROW_HEIGHT) - OVERSCAN);
  const to = Math.min(rows.length, Math.ceil((view.top + view.height) / ROW_HEIGHT) + OVERSCAN);
  const pct = (ms: number) => `${((ms - t0) / span) * 100}%`;
  const notStarted = names.length - rows.length;
  return (
    <section className="timeline" aria-label="timeline" data-rows={rows.length}>
      <div className="tl-axis" aria-hidden>
        <div className="tl-label muted">
          {rows.length} started{notStarted > 0 ? `, ${notStarted} not` : ''}
        </div>
        <div className="tl-track">
          {ticks(span).map((t) => (
            <span key={t} className="tl-tick" style={{ left: pct(t0 + t) }}>
              {tickLabel(t)}
            </span>
          ))}
        </div>
      </div>
      <div className="tl-rows" ref={scroller}>
        {rows.length === 0 && <p className="muted tl-empty">No node has started yet.</p>}
        <div style={{ height: rows.length * ROW_HEIGHT, position: 'relative' }}>
          {rows.slice(from, to).map((r, i) => (
            <TimelineRow
              key={r.name}
              row={r}
              top={(from + i) * ROW_HEIGHT}
              selected={r.name === selected}
              onSelect={onSelect}
              left={pct}
              width={(b) => `max(2px, ${(((b.endMs ?? now) - b.startMs) / span) * 100}%)`}
              now={now}
            />
          ))}
        </div>
      </div>
    </section>
  );
}

interface RowProps {
  row: Row;
  top: number;
  selected: boolean;
  onSelect: (name: string) => void;
  left: (ms: number) => string;
  width: (b: Bar) => string;
  now: number;
}

const TimelineRow = memo(function TimelineRow({ row, top, selected, onSelect, left, width, now }: RowProps) {
  return (
    <div
      className={`tl-row${selected ? ' selected' : ''}`}
      style={{ top, height: ROW_HEIGHT }}
      data-timeline-row={row.name}
    >
      <button type="button" className="tl-label tl-name" title={row.name} onClick={() => onSelect(row.name)}>
        {row.name}
      </button>
      <div className="tl-track">
        {row.bars.map((b) => (
          <span
            key={b.n}
            className={`tl-bar look-${b.look}`}
            style={{ left: left(b.startMs), width: width(b) }}
            title={b.endMs === undefined ? `${b.label} for ${formatMs(now - b.startMs)}` : b.label}
            data-attempt={b.n}
            data-look={b.look}
            data-running={b.endMs === undefined ? '' : undefined}
          />
        ))}
      </div>
    </div>
  );
});
