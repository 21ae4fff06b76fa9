import { TextDecoder } from 'node:util';
import { attemptExitCode } from '../model/labels.js';
import type { Attempt, NodeState, Run } from '../model/types.js';
import { countNodes } from '../model/wire.js';
import type { OutputEvent, WatchEvent } from '../protocol/repository.js';
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
  /** Leave out what running nodes print (shown by default, one line per output line). */
  noOutput?: boolean;
  signal?: AbortSignal;
}

interface Renderer {
  snapshot(run: Run): void;
  transition(before: NodeState | undefined, after: NodeState, run: Run): void;
  /** Whole lines a running node printed (live output), in order. */
  output(node: string, lines: string[]): void;
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
  const output = new OutputLines();
  try {
    for await (const event of source.watch(id, { signal: options.signal })) {
      if (event.type === 'snapshot') {
        run = { ...event.run, nodes: [...event.run.nodes] };
        renderer.snapshot(run);
        // What running nodes printed before the watch joined, then their new output as it comes.
        if (!options.noOutput)
          for (const n of run.nodes)
            if (n.status === 'RUNNING' && n.liveOutput?.byteLength)
              renderer.output(
                n.spec.name,
                output.add({
                  type: 'output',
                  runId: run.id,
                  node: n.spec.name,
                  attempt: n.attempts.length + 1,
                  offset: 0,
                  chunk: n.liveOutput,
                }),
              );
        continue;
      }
      if (event.type === 'output') {
        if (!options.noOutput) renderer.output(event.node, output.add(event));
        continue;
      }
      if (!run) continue; // the stream always starts with a snapshot; never index a run we lack
      const i = run.nodes.findIndex((n) => n.spec.name === event.node.spec.name);
      const before = i >= 0 ? run.nodes[i] : undefined;
      if (i >= 0) run.nodes[i] = event.node;
      else run.nodes.push(event.node);
      run.status = event.runStatus;
      run.conclusion = event.runConclusion;
      // An attempt that ended may have left a last line without its newline.
      if (!options.noOutput && event.node.status !== 'RUNNING')
        renderer.output(event.node.spec.name, output.end(event.node.spec.name));
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
  return { snapshot() {}, transition() {}, output() {}, finish() {}, abort() {} };
}

/** Longest output line a watch prints; the rest of it is `adagio runs logs`'s job. */
const OUTPUT_LINE_MAX = 200;

/**
 * Turns output chunks into whole lines per node: a repeated chunk (delivery is
 * at least once) adds nothing, UTF-8 split across chunks is decoded whole, and
 * a line waits for its newline (or for the attempt to end).
 */
export class OutputLines {
  private readonly nodes = new Map<
    string,
    { attempt: number; have: number; decoder: TextDecoder; partial: string }
  >();

  add(ev: OutputEvent): string[] {
    let s = this.nodes.get(ev.node);
    if (!s || s.attempt !== ev.attempt) {
      s = { attempt: ev.attempt, have: 0, decoder: new TextDecoder(), partial: '' };
      this.nodes.set(ev.node, s);
    }
    // A gap (chunks missed) is left as is: the bytes after it are still worth showing.
    const skip = Math.max(0, s.have - ev.offset);
    if (skip >= ev.chunk.byteLength) return [];
    s.have = ev.offset + ev.chunk.byteLength;
    const text = s.partial + s.decoder.decode(ev.chunk.subarray(skip), { stream: true });
    const lines = text.split(/\r?\n/);
    s.partial = lines.pop() ?? '';
    return lines.map(clip);
  }

  /** The last line of the node's attempt when it had no newline. */
  end(node: string): string[] {
    const s = this.nodes.get(node);
    if (!s) return [];
    this.nodes.delete(node);
    const rest = s.partial + s.decoder.decode();
    return rest ? [clip(rest)] : [];
  }
}

function clip(line: string): string {
  // Control characters (a carriage return's progress bars, escapes) would scramble the watch's own lines.
  const clean = line.replace(/\t/g, '  ').replace(/\p{Cc}/gu, '');
  const chars = [...clean];
  return chars.length > OUTPUT_LINE_MAX ? `${chars.slice(0, OUTPUT_LINE_MAX - 1).join('')}…` : clean;
}

/**
 * When the node reached the state it is in, as the run records it: catch-up
 * lines are stamped with it rather than with the time the watch joined.
 */
export function transitionTime(
  node: NodeState,
  run: Pick<Run, 'createdAt' | 'nodes' | 'edges'>,
): number | undefined {
  const t = (s: string | undefined) => (s ? Date.parse(s) : Number.NaN);
  const last = node.attempts[node.attempts.length - 1];
  let ms = Number.NaN;
  if (node.status === 'RUNNING') ms = t(node.startedAt);
  else if (node.status === 'COMPLETED') ms = t(node.finishedAt || last?.finishedAt);
  else if (node.status === 'READY') {
    if (last) ms = t(last.finishedAt);
    else {
      // Ready since its last upstream node succeeded, or since the run began.
      ms = t(run.createdAt);
      for (const e of run.edges)
        if (e.destination === node.spec.name) {
          const up = run.nodes.find((n) => n.spec.name === e.source);
          const done = t(up?.finishedAt);
          if (done > ms) ms = done;
        }
    }
  }
  return Number.isNaN(ms) ? undefined : ms;
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
      return `COMPLETED  ${c}${Number.isNaN(took) ? '' : ` in ${formatDuration(Math.max(0, took))}`}${attempts}${exitCodeNote(last)}`;
    }
    case 'READY':
      return last
        ? `READY      retrying after ${last.conclusion} (attempt ${after.attempts.length}${exitCodeNote(last)})${after.nextAttemptAt ? `, next attempt due ${after.nextAttemptAt}` : ''}`
        : 'READY';
    default:
      return after.status;
  }
}

/** `, exit code 2` after an unsuccessful exec attempt; nothing otherwise (a success's 0 says nothing new). */
function exitCodeNote(a: Attempt): string {
  const code = a.conclusion === 'SUCCESS' ? undefined : attemptExitCode(a.metadata);
  return code === undefined ? '' : `, exit code ${code}`;
}

function lineRenderer(out: OutputStream, now: () => number): Renderer {
  let nameWidth = 0;
  return {
    snapshot(run) {
      nameWidth = Math.min(32, Math.max(4, ...run.nodes.map((n) => n.spec.name.length)));
      out.write(
        `watching run ${run.id} ${runState(run.status, run.conclusion)}: ${nodeCount(run.nodes.length)}\n`,
      );
      // Where each node already stands, so a watch joined mid-run still tells the whole story,
      // each line stamped with when that happened (in time order; the graph's order for ties).
      const joined = now();
      const lines = topologicalOrder(run.nodes, run.edges)
        .filter((n) => n.status !== 'WAITING')
        .map((n) => ({ n, at: transitionTime(n, run) ?? joined }))
        .sort((a, b) => a.at - b.at);
      for (const { n, at } of lines)
        out.write(`${clock(at)}  ${n.spec.name.padEnd(nameWidth)}  ${describeTransition(undefined, n)}\n`);
    },
    transition(before, after) {
      const what = describeTransition(before, after);
      if (what) out.write(`${clock(now())}  ${after.spec.name.padEnd(nameWidth)}  ${what}\n`);
    },
    output(node, lines) {
      const t = clock(now());
      for (const l of lines) out.write(`${t}  ${node.padEnd(nameWidth)}  | ${l}\n`);
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
    output(node, lines) {
      if (lines.length === 0) return;
      // Above the progress line: clear it, print, draw it again.
      out.write(`\r\x1b[2K${lines.map((l) => `${node} | ${l}\n`).join('')}`);
      draw(false);
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

/**
 * The live line, within `columns - 1` characters (a full last column would
 * wrap on some terminals): the run, its state, counts and elapsed time always;
 * the bar shrinks (down to nothing) to make room, and the running nodes' names
 * take what is left, cut with `…`.
 */
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
  const elapsed = runElapsed(run, now);
  const head = `${spinner} run ${run.id} ${runState(run.status, run.conclusion)}`;
  const counts =
    `${c.COMPLETED}/${run.nodes.length} ✓${ok} ✗${bad} ▶${c.RUNNING} ·${c.READY + c.WAITING}` +
    (elapsed === undefined ? '' : `  ${formatDuration(elapsed)}`);
  const running = run.nodes.filter((n) => n.status === 'RUNNING').map((n) => n.spec.name);
  const names = running.length ? `  running: ${running.join(', ')}` : '';
  const room = Math.max(0, columns - 1);
  const width = (s: string) => [...s].length;
  // " [" + bar + "]" costs 3 besides the bar; below 5 cells a bar says too little to be worth it.
  // The running names keep up to 20 columns before the bar takes any.
  const barWidth = Math.min(20, room - width(head) - width(counts) - 1 - 3 - Math.min(width(names), 20));
  let line = head;
  if (barWidth >= 5) {
    const filled = Math.round((c.COMPLETED / total) * barWidth);
    line += ` [${'█'.repeat(filled)}${'░'.repeat(barWidth - filled)}]`;
  }
  line += ` ${counts}${names}`;
  const chars = [...line];
  if (chars.length > room) line = `${chars.slice(0, Math.max(0, room - 1)).join('')}…`;
  return line;
}
