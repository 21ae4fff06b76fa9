import type { NodeState, Run } from '../model/types.js';
import { countNodes } from '../model/wire.js';
import type { WatchEvent } from '../protocol/repository.js';
import { formatDuration } from '../runtimes/duration.js';
import { CliError, EXIT } from './errors.js';
import { nodeConclusion, runState, topologicalOrder } from './format.js';
import type { CliIO, OutputStream } from './io.js';
import { nodeCount, nodesSummary, runElapsed, runLine } from './views.js';

/**
 * `adagio runs watch`: follows a run until it completes. On a terminal one
 * progress line is redrawn in place; otherwise (pipes, files, CI logs) one
 * line is printed per node transition. Exit 0 when the run succeeded, 1
 * otherwise.
 */

export interface WatchSource {
  watch(id: string, options?: { signal?: AbortSignal }): AsyncIterable<WatchEvent>;
  inspect(id: string): Promise<Run>;
}

export interface WatchOptions {
  /** Print nothing; only the exit code tells how the run ended. */
  quiet?: boolean;
  /** One line per transition even on a terminal. */
  lines?: boolean;
  signal?: AbortSignal;
}

interface Renderer {
  snapshot(run: Run): void;
  transition(before: NodeState | undefined, after: NodeState, run: Run): void;
  finish(run: Run): void;
  /** Stops redrawing (interrupted or failed). */
  abort(): void;
}

export async function watchRun(source: WatchSource, id: string, io: CliIO, options: WatchOptions = {}) {
  const renderer: Renderer = options.quiet
    ? quietRenderer()
    : io.stdout.isTTY && !options.lines
      ? liveRenderer(io.stdout, io.now)
      : lineRenderer(io.stdout, io.now);
  let run: Run | undefined;
  try {
    for await (const event of source.watch(id, { signal: options.signal })) {
      if (event.type === 'snapshot') {
        run = { ...event.run, nodes: [...event.run.nodes] };
        renderer.snapshot(run);
        continue;
      }
      if (event.type === 'output') continue; // `adagio runs logs -f` shows output
      if (!run) continue; // the stream always starts with a snapshot; never index a run we lack
      const i = run.nodes.findIndex((n) => n.spec.name === event.node.spec.name);
      const before = i >= 0 ? run.nodes[i] : undefined;
      if (i >= 0) run.nodes[i] = event.node;
      else run.nodes.push(event.node);
      run.status = event.runStatus;
      run.conclusion = event.runConclusion;
      renderer.transition(before, event.node, run);
    }
  } catch (e) {
    renderer.abort();
    if (options.signal?.aborted) return interrupted(io, id);
    throw e;
  }
  if (options.signal?.aborted) {
    renderer.abort();
    return interrupted(io, id);
  }
  // The stream ends when the run completes; if it ended early (daemon restart), ask once for the truth.
  if (run?.status !== 'COMPLETED') {
    run = await source.inspect(id);
    if (run.status !== 'COMPLETED') {
      renderer.abort();
      throw new CliError(`the watch of run ${id} ended before the run completed; watch it again`, EXIT.api);
    }
  }
  renderer.finish(run);
  return run.conclusion === 'SUCCESS' ? EXIT.ok : EXIT.failed;
}

/** Ctrl-C stops the watch, not the run: say so, since users often expect the opposite. */
function interrupted(io: CliIO, id: string): number {
  io.stderr.write(`adagio: stopped watching; run ${id} goes on (adagio runs cancel ${id} stops it)\n`);
  return EXIT.interrupted;
}

function quietRenderer(): Renderer {
  return { snapshot() {}, transition() {}, finish() {}, abort() {} };
}

/** `12:00:01.234`: local wall-clock time of a transition as this client saw it. */
function clock(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** What changed about a node, or undefined when an event repeats a known state (delivery is at least once). */
export function describeTransition(before: NodeState | undefined, after: NodeState): string | undefined {
  if (before && before.status === after.status && before.attempts.length === after.attempts.length) return;
  const last = after.attempts[after.attempts.length - 1];
  switch (after.status) {
    case 'RUNNING':
      return `RUNNING    attempt ${after.attempts.length + 1}`;
    case 'COMPLETED': {
      const c = nodeConclusion(after);
      if (!last) return `COMPLETED  ${c}`;
      const took =
        last.startedAt && last.finishedAt ? Date.parse(last.finishedAt) - Date.parse(last.startedAt) : NaN;
      const attempts = after.attempts.length > 1 ? `, ${after.attempts.length} attempts` : '';
      return `COMPLETED  ${c}${Number.isNaN(took) ? '' : ` in ${formatDuration(Math.max(0, took))}`}${attempts}`;
    }
    case 'READY':
      return last
        ? `READY      retrying after ${last.conclusion} (attempt ${after.attempts.length})${after.nextAttemptAt ? `, next attempt due ${after.nextAttemptAt}` : ''}`
        : 'READY';
    default:
      return after.status;
  }
}

function lineRenderer(out: OutputStream, now: () => number): Renderer {
  let nameWidth = 0;
  return {
    snapshot(run) {
      nameWidth = Math.min(32, Math.max(4, ...run.nodes.map((n) => n.spec.name.length)));
      out.write(
        `watching run ${run.id} ${runState(run.status, run.conclusion)}: ${nodeCount(run.nodes.length)}\n`,
      );
      // Where each node already stands, so a watch joined mid-run still tells the whole story.
      const t = clock(now());
      for (const n of topologicalOrder(run.nodes, run.edges)) {
        if (n.status === 'WAITING') continue;
        out.write(`${t}  ${n.spec.name.padEnd(nameWidth)}  ${describeTransition(undefined, n)}\n`);
      }
    },
    transition(before, after) {
      const what = describeTransition(before, after);
      if (what) out.write(`${clock(now())}  ${after.spec.name.padEnd(nameWidth)}  ${what}\n`);
    },
    finish(run) {
      out.write(`${finalLine(run, now())}\n`);
    },
    abort() {},
  };
}

export function finalLine(run: Run, now: number): string {
  const elapsed = runElapsed(run, now);
  const took = elapsed === undefined ? '' : ` in ${formatDuration(elapsed)}`;
  return `run ${run.id} ${runState(run.status, run.conclusion)}${took}: ${nodeCount(run.nodes.length)}, ${nodesSummary(run)}`;
}

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * The terminal view: one line, redrawn at most every 100 ms and at least
 * every second (so the clock moves), e.g.
 * `⠹ run 01J… RUNNING [██████░░░░] 4/7 ✓4 ✗0 ▶2 · 1.2s  running: c, d`.
 */
function liveRenderer(out: OutputStream, now: () => number): Renderer {
  let run: Run | undefined;
  let frame = 0;
  let dirty = false;
  let lastDraw = 0;
  const timer = setInterval(() => draw(true), 100);
  timer.unref?.();
  function draw(tick: boolean) {
    if (!run) return;
    const t = now();
    if (tick && !dirty && t - lastDraw < 1000) return;
    dirty = false;
    lastDraw = t;
    frame++;
    out.write(`\r\x1b[2K${progressLine(run, t, SPINNER[frame % SPINNER.length]!, out.columns || 80)}`);
  }
  function stop() {
    clearInterval(timer);
    if (run) out.write('\r\x1b[2K');
  }
  return {
    snapshot(r) {
      run = r;
      draw(false);
    },
    transition(_before, _after, r) {
      run = r;
      dirty = true;
    },
    finish(r) {
      stop();
      out.write(`${finalLine(r, now())}\n`);
    },
    abort() {
      stop();
      if (run) out.write(`${runLine(run)}\n`);
    },
  };
}

export function progressLine(run: Run, now: number, spinner: string, columns: number): string {
  const c = countNodes(run.nodes);
  let ok = 0;
  let bad = 0;
  for (const n of run.nodes) {
    const conclusion = nodeConclusion(n);
    if (conclusion === 'SUCCESS') ok++;
    else if (conclusion) bad++;
  }
  const total = run.nodes.length || 1;
  const barWidth = 20;
  const filled = Math.round((c.COMPLETED / total) * barWidth);
  const bar = `${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}`;
  const elapsed = runElapsed(run, now);
  const running = run.nodes.filter((n) => n.status === 'RUNNING').map((n) => n.spec.name);
  let line =
    `${spinner} run ${run.id} ${runState(run.status, run.conclusion)} [${bar}] ${c.COMPLETED}/${run.nodes.length}` +
    ` ✓${ok} ✗${bad} ▶${c.RUNNING} ·${c.READY + c.WAITING}` +
    (elapsed === undefined ? '' : `  ${formatDuration(elapsed)}`) +
    (running.length ? `  running: ${running.join(', ')}` : '');
  const chars = [...line];
  if (chars.length > columns - 1) line = `${chars.slice(0, Math.max(10, columns - 2)).join('')}…`;
  return line;
}
