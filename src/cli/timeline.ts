import type { AttemptConclusion, NodeState, Run } from '../model/types.js';
import { formatDuration } from '../runtimes/duration.js';
import { table } from './format.js';

/**
 * `runs inspect --output timeline`: a text Gantt chart of the run's attempts,
 * retries included, one row per attempt on a shared time axis from the run's
 * creation to its finish (or now). Each bar is drawn with its conclusion's
 * letter: S success, F fail, E error, C cancelled, R still running.
 */
const WIDTH = 50;
const MARK: Record<AttemptConclusion | 'RUNNING', string> = {
  SUCCESS: 'S',
  FAIL: 'F',
  ERROR: 'E',
  CANCELLED: 'C',
  RUNNING: 'R',
};

interface Bar {
  node: string;
  attempt: number;
  from: number;
  to: number;
  mark: keyof typeof MARK;
}

export function runTimeline(run: Run, ordered: readonly NodeState[], now: number): string {
  const start = Date.parse(run.createdAt);
  const bars: Bar[] = [];
  for (const n of ordered) {
    n.attempts.forEach((a, i) => {
      const from = Date.parse(a.startedAt);
      const to = Date.parse(a.finishedAt);
      if (Number.isFinite(from) && Number.isFinite(to))
        bars.push({ node: n.spec.name, attempt: i + 1, from, to, mark: a.conclusion });
    });
    if (n.status === 'RUNNING' && n.startedAt)
      bars.push({
        node: n.spec.name,
        attempt: n.attempts.length + 1,
        from: Date.parse(n.startedAt),
        to: now,
        mark: 'RUNNING',
      });
  }
  if (bars.length === 0) return 'No attempts yet.\n';
  const last = Math.max(...bars.map((b) => b.to));
  const end = Math.max(
    last,
    run.finishedAt ? Date.parse(run.finishedAt) : run.status === 'COMPLETED' ? last : now,
  );
  const span = Math.max(1, end - start);
  const col = (t: number) => Math.min(WIDTH - 1, Math.max(0, Math.floor(((t - start) / span) * WIDTH)));
  const rows = bars.map((b) => {
    const a = col(b.from);
    const z = Math.max(a, col(b.to));
    const bar = `${' '.repeat(a)}${MARK[b.mark].repeat(z - a + 1)}`.padEnd(WIDTH);
    return [b.node, String(b.attempt), `|${bar}|`, formatDuration(Math.max(0, b.to - b.from))];
  });
  const axis = `0${formatDuration(span).padStart(WIDTH + 1)}`;
  return `${table(['NODE', '#', 'TIMELINE', 'TOOK'], rows)}${' '.repeat(Math.max(...rows.map((r) => r[0]!.length), 4) + 2 + Math.max(...rows.map((r) => r[1]!.length), 1) + 2)}${axis}\nS success, F fail, E error, C cancelled, R running\n`;
}
