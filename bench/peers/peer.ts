import { type CpuMeter, type CpuSpent, withCpu } from '../cpu.js';
import { timed } from '../report.js';

/**
 * What every contender of `npm run bench -- peers` implements. Each workload
 * runs on an empty queue (or schema), 16 worker slots in this one process,
 * no-op jobs; a contender leaves out a workload it has no shape for.
 */
export interface Contender {
  readonly name: string;
  /** Enqueues `jobs` independent jobs with no worker running, then times a worker draining them. */
  backlog?(jobs: number): Promise<Measured>;
  /** Adds `count` jobs at `rate` per second to a running worker; each job's add → start time, ms. */
  latency?(rate: number, count: number): Promise<number[]>;
  /** Adds `runs` small DAGs (or the peer's nearest shape) while a worker drains them; times all. */
  dag?(runs: number): Promise<Measured>;
}

/** A peer: its contenders (modes, shapes) and the cleanup of its store. */
export interface Peer {
  contenders: Contender[];
  close(): Promise<void>;
}

export const SLOTS = 16;
/** Producers adding work while it drains (the DAG workload), for every peer alike. */
export const PRODUCERS = 4;

export interface Measured extends CpuSpent {
  jobs: number;
  ms: number;
}

/** Times `fn`, which finishes `jobs` jobs, with the CPU it costs this process and the server. */
export async function measure(jobs: number, server: CpuMeter | undefined, fn: () => Promise<void>) {
  const r = await withCpu(server, () => timed(fn));
  return { jobs, ms: r.ms, workerUs: r.workerUs, serverUs: r.serverUs } satisfies Measured;
}

/**
 * add → start latency at a fixed rate. The consumer calls `record(t0)` when a
 * job starts; `run(rate, add)` first sends one probe job and waits for it
 * (a peer's first job pays one-time costs: its first lookup of the task),
 * then adds for WARM_UP_MS at the rate, untimed (a pool opens its
 * connections and prepares its statements as concurrent adds first need
 * them: the first tens of ms of a fresh Adagio repository ran at 5–20 ms
 * per job), then calls `add(t0)` `count` times on a fixed schedule (an add
 * does not wait for the one before, as independent producers would not), t0
 * being performance.now() at the add, and resolves with those `count`
 * latencies in ms. Every contender gets the same warm-up.
 */
export function latencies(count: number) {
  const samples: number[] = [];
  let probed = false;
  let started = 0;
  /** Adds before this moment are the warm-up's: their starts are counted, not timed. */
  let timedFrom = Number.POSITIVE_INFINITY;
  let wake = () => {};
  const until = (done: () => boolean, what: string) =>
    within(
      new Promise<void>((resolve) => {
        wake = () => {
          if (done()) resolve();
        };
        wake();
      }),
      120_000,
      what,
    );
  /** `n` adds at `rate`, each given the moment it was made. */
  const paced = async (n: number, rate: number, add: (t0: number) => Promise<unknown>) => {
    const from = performance.now();
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const wait = from + (i * 1000) / rate - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      pending.push(add(performance.now()));
    }
    await Promise.all(pending);
  };
  return {
    record(t0: number) {
      if (t0 >= timedFrom) samples.push(performance.now() - t0);
      else if (probed) started++;
      probed = true;
      wake();
    },
    async run(rate: number, add: (t0: number) => Promise<unknown>): Promise<number[]> {
      await add(performance.now());
      await until(() => probed, 'the add → start probe');
      const warm = Math.ceil((rate * WARM_UP_MS) / 1000);
      await paced(warm, rate, add);
      await until(() => started >= warm, 'the add → start warm-up');
      timedFrom = performance.now();
      await paced(count, rate, add);
      await until(() => samples.length >= count, 'the add → start workload');
      return samples;
    },
  };
}

/** How long each contender is fed at the measured rate before add → start is timed. */
export const WARM_UP_MS = 1_000;

/** `promise`, or a rejection naming `what` after `ms`: a lost job must fail the benchmark, not hang it. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Counts finished jobs; `all` resolves at `jobs` (or rejects after 10 minutes, naming `what`). */
export function countdown(jobs: number, what: string) {
  let done = 0;
  let finished!: () => void;
  const reached = new Promise<void>((r) => {
    finished = r;
  });
  return {
    add(n = 1) {
      done += n;
      if (done >= jobs) finished();
    },
    all: () => within(reached, 600_000, what),
  };
}
