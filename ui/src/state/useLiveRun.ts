import { Code, ConnectError } from '@connectrpc/connect';
import { useCallback, useEffect, useRef, useState } from 'react';
import type { Edge, Node, Run } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { Node_Status, Run_Conclusion, Run_Status } from '../../../src/gen/adagio/v1/adagio_pb.js';
import { api, errorMessage, isAbort, isAuthError } from '../api/client.js';
import { onTokenChange } from '../api/token.js';

/** The parts of a run that never change (but the deadline a retry lifts): they decide the layout, so they keep their identity. */
export interface RunShape {
  id: string;
  createdAt: string;
  /** When the run's deadline passes (rule 13); empty without one. */
  deadlineAt: string;
  names: string[];
  edges: Edge[];
  /** The run's identity (rule 17): set at start, never changed. */
  identity: Pick<Run, 'name' | 'labels' | 'workflow' | 'workflowVersion' | 'params'>;
}

export interface LiveRun {
  shape: RunShape | undefined;
  /** Node name → latest state. A new Map per update; unchanged nodes keep their object. */
  nodes: ReadonlyMap<string, Node>;
  status: Run_Status;
  conclusion: Run_Conclusion;
  /** True while the Watch stream is open. */
  live: boolean;
  error: string | undefined;
  authError: boolean;
  notFound: boolean;
  /** Applies a run returned by another call (e.g. Cancel) without waiting for the stream. */
  apply: (run: Run) => void;
  /** Follows the run again after its stream ended (a retry reopened a completed run). */
  follow: () => void;
}

// Watch events can arrive in bursts (hundreds per second on a wide run); React
// renders at most this often, with every change of the interval in one update.
// A render costs O(nodes) in the graph library, so big runs render less often.
const FLUSH_MS = 80;
const BIG_RUN_FLUSH_MS = 300;
const BIG_RUN = 200;

interface State {
  shape: RunShape | undefined;
  nodes: ReadonlyMap<string, Node>;
  status: Run_Status;
  conclusion: Run_Conclusion;
  live: boolean;
  error: string | undefined;
  authError: boolean;
  notFound: boolean;
}

const initial: State = {
  shape: undefined,
  nodes: new Map(),
  status: Run_Status.NONE,
  conclusion: Run_Conclusion.UNSPECIFIED,
  live: false,
  error: undefined,
  authError: false,
  notFound: false,
};

// How often a finished run is looked at for a retry made elsewhere, while the tab is visible.
// A big run's Inspect answer is big too: it is asked less often (and only once, then its summary).
const RECHECK_MS = 5_000;
const BIG_RECHECK_MS = 20_000;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Follows one run live over the Watch stream, reconnecting (with a fresh snapshot) after failures. */
export function useLiveRun(runId: string): LiveRun {
  const [state, setState] = useState<State>(initial);
  const [tokenTick, setTokenTick] = useState(0);
  useEffect(() => onTokenChange(() => setTokenTick((t) => t + 1)), []);
  // Bumped to open a new Watch stream (the old one ended with the run).
  const [followTick, setFollowTick] = useState(0);
  const follow = useCallback(() => setFollowTick((t) => t + 1), []);

  // Changes not yet rendered, merged into state on the next flush.
  const pending = useRef<{ nodes: Map<string, Node>; run?: Run; patch: Partial<State> }>({
    nodes: new Map(),
    patch: {},
  });
  const timer = useRef<number | undefined>(undefined);
  // The nodes as last rendered: output chunks extend the newest state of their node.
  const rendered = useRef<ReadonlyMap<string, Node>>(new Map());
  // Node count of the run, known from the first snapshot; picks the flush interval.
  const size = useRef(0);

  const flush = useCallback(() => {
    timer.current = undefined;
    const p = pending.current;
    pending.current = { nodes: new Map(), patch: {} };
    setState((s) => {
      let next: State = { ...s, ...p.patch };
      if (p.run) next = withSnapshot(next, p.run);
      if (p.nodes.size > 0) {
        const nodes = new Map(next.nodes);
        for (const [name, node] of p.nodes) nodes.set(name, node);
        next.nodes = nodes;
      }
      rendered.current = next.nodes;
      return next;
    });
  }, []);

  const schedule = useCallback(
    (immediate = false) => {
      if (immediate) {
        if (timer.current !== undefined) window.clearTimeout(timer.current);
        flush();
      } else if (timer.current === undefined)
        timer.current = window.setTimeout(flush, size.current > BIG_RUN ? BIG_RUN_FLUSH_MS : FLUSH_MS);
    },
    [flush],
  );

  const apply = useCallback(
    (run: Run) => {
      pending.current.run = run;
      pending.current.nodes.clear();
      pending.current.patch = { ...pending.current.patch, status: run.status, conclusion: run.conclusion };
      schedule(true);
    },
    [schedule],
  );

  // biome-ignore lint/correctness/useExhaustiveDependencies: tokenTick restarts the stream with the new token, followTick after a retry.
  useEffect(() => {
    // A new run clears the page; following the same run again keeps what is shown until the snapshot.
    if (followTick === 0) setState(initial);
    const ctrl = new AbortController();
    const { signal } = ctrl;
    const patch = (p: Partial<State>, immediate = false) => {
      pending.current.patch = { ...pending.current.patch, ...p };
      schedule(immediate);
    };
    void (async () => {
      let backoff = 500;
      while (!signal.aborted) {
        let completed = false;
        // Node messages carry only the attempts not sent before (attempts_from): keep each node's list here.
        const attempts = new Map<string, Node['attempts']>();
        try {
          for await (const msg of api.watch({ id: runId }, { signal })) {
            if (msg.run) {
              for (const n of msg.run.nodes) if (n.spec) attempts.set(n.spec.name, n.attempts);
              size.current = msg.run.nodes.length;
              pending.current.run = msg.run;
              pending.current.nodes.clear();
              completed = msg.run.status === Run_Status.COMPLETED;
              patch({ live: true, error: undefined, authError: false, status: msg.run.status, conclusion: msg.run.conclusion }, true);
            } else if (msg.output) {
              const o = msg.output;
              const node = pending.current.nodes.get(o.nodeName) ?? rendered.current.get(o.nodeName);
              const grown = node && withOutput(node, o.attempt, Number(o.offset), o.chunk);
              if (grown) {
                pending.current.nodes.set(o.nodeName, grown);
                patch({});
              }
            } else if (msg.node?.spec) {
              const name = msg.node.spec.name;
              const earlier = (attempts.get(name) ?? []).slice(0, msg.attemptsFrom);
              msg.node.attempts = [...earlier, ...msg.node.attempts];
              attempts.set(name, msg.node.attempts);
              const known = pending.current.nodes.get(name) ?? rendered.current.get(name);
              pending.current.nodes.set(name, keepLiveOutput(known, msg.node));
              completed = msg.runStatus === Run_Status.COMPLETED;
              patch({ status: msg.runStatus, conclusion: msg.runConclusion });
            }
            backoff = 500;
          }
          patch({ live: false }, true);
          // The stream ends once the run has completed; an early end (daemon restart) reconnects.
          // A completed run can be retried elsewhere (CLI, API, another tab): watch it again once it is.
          if (completed) {
            await untilChanged(runId, () => rendered.current, size.current > BIG_RUN ? BIG_RECHECK_MS : RECHECK_MS, signal);
            continue;
          }
        } catch (e) {
          if (signal.aborted || isAbort(e)) return;
          if (e instanceof ConnectError && e.code === Code.NotFound) {
            patch({ live: false, notFound: true, error: errorMessage(e) }, true);
            return;
          }
          // No token yet: wait for the user to set one (tokenTick restarts this effect).
          if (isAuthError(e)) {
            patch({ live: false, authError: true, error: errorMessage(e) }, true);
            return;
          }
          patch({ live: false, error: `${errorMessage(e)} (reconnecting…)` }, true);
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 10_000);
      }
    })();
    return () => {
      ctrl.abort();
      if (timer.current !== undefined) window.clearTimeout(timer.current);
      timer.current = undefined;
      pending.current = { nodes: new Map(), patch: {} };
    };
  }, [runId, tokenTick, followTick, schedule]);

  return { ...state, apply, follow };
}

/** Replaces every node with the snapshot's; keeps the shape (and so the layout) when it is the same run. */
function withSnapshot(s: State, run: Run): State {
  const nodes = new Map<string, Node>();
  for (const n of run.nodes) if (n.spec) nodes.set(n.spec.name, n);
  const shape: RunShape =
    s.shape?.id === run.id && s.shape.names.length === run.nodes.length
      ? // A retry (rule 15) lifts the deadline: the only part of the shape that can change.
        s.shape.deadlineAt === run.deadlineAt
        ? s.shape
        : { ...s.shape, deadlineAt: run.deadlineAt }
      : {
          id: run.id,
          createdAt: run.createdAt,
          deadlineAt: run.deadlineAt,
          names: [...nodes.keys()],
          edges: run.edges,
          identity: {
            name: run.name,
            labels: run.labels,
            workflow: run.workflow,
            workflowVersion: run.workflowVersion,
            params: run.params,
          },
        };
  return { ...s, shape, nodes, status: run.status, conclusion: run.conclusion };
}

/**
 * The node with `chunk` appended to its running attempt's output at `offset`;
 * undefined when it adds nothing (a repeat, another attempt, or a gap the next
 * snapshot fills).
 */
function withOutput(node: Node, attempt: number, offset: number, chunk: Uint8Array): Node | undefined {
  if (node.status !== Node_Status.RUNNING || attempt !== node.attempts.length + 1) return undefined;
  const have = node.liveOutput.byteLength;
  if (offset > have || offset + chunk.byteLength <= have) return undefined;
  const out = new Uint8Array(offset + chunk.byteLength);
  out.set(node.liveOutput.subarray(0, offset));
  out.set(chunk, offset);
  return { ...node, liveOutput: out };
}

/** A node event of a still running attempt may not carry its output (backends send it apart): keep ours. */
function keepLiveOutput(known: Node | undefined, next: Node): Node {
  if (
    !known ||
    next.liveOutput.byteLength > 0 ||
    next.status !== Node_Status.RUNNING ||
    known.status !== Node_Status.RUNNING ||
    known.attempts.length !== next.attempts.length
  )
    return next;
  return { ...next, liveOutput: known.liveOutput };
}

/**
 * Resolves once a completed run differs from what is shown (open again, or
 * with attempts the page has not seen: a retry that already finished), or the
 * signal aborts. Checks every `periodMs` while the tab is visible, and at once
 * when it becomes visible again; a failed check waits for the next one. The
 * first check inspects the run against what is shown; the later ones read
 * only its summary (a list of the one run, by its id and creation time): its
 * status, and its finish time against the inspected one. An Inspect carries
 * up to 4 MiB of outputs, and the store reads all of them to choose.
 */
async function untilChanged(
  runId: string,
  shown: () => ReadonlyMap<string, Node>,
  periodMs: number,
  signal: AbortSignal,
): Promise<void> {
  let seen: { createdMs: number; finishedAt: string } | undefined;
  while (!signal.aborted) {
    await nextVisibleTick(periodMs, signal);
    if (signal.aborted) return;
    try {
      if (!seen) {
        const { run } = await api.inspect({ id: runId }, { signal });
        if (!run) continue;
        if (run.status !== Run_Status.COMPLETED || attemptCount(run.nodes) !== attemptCount(shown().values())) return;
        seen = { createdMs: Date.parse(run.createdAt), finishedAt: run.finishedAt };
        continue;
      }
      const ns = BigInt(seen.createdMs) * 1_000_000n;
      const { runs } = await api.listRuns(
        { startNs: ns, finishNs: ns + 1_000_000n, search: runId, limit: 10 },
        { signal },
      );
      const run = runs.find((r) => r.id === runId);
      // Gone (retention), open again, or finished again: follow it (the stream says which).
      if (!run || run.status !== Run_Status.COMPLETED || run.finishedAt !== seen.finishedAt) return;
    } catch (e) {
      if (signal.aborted || isAbort(e)) return;
    }
  }
}

/** Waits `ms` and then until the tab is visible; returns at once when a hidden tab becomes visible. */
function nextVisibleTick(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', onVisibility);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const onVisibility = () => {
      if (document.visibilityState === 'visible') done();
    };
    const timer = window.setInterval(() => {
      if (document.visibilityState === 'visible') done();
    }, ms);
    document.addEventListener('visibilitychange', onVisibility);
    signal.addEventListener('abort', done);
  });
}

function attemptCount(nodes: Iterable<Node>): number {
  let n = 0;
  for (const node of nodes) n += node.attempts.length;
  return n;
}
