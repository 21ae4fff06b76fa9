import { readFileSync } from 'node:fs';

/**
 * CPU time, in microseconds, for the benchmarks' "CPU per job" figures: wall
 * clock is unreliable on a shared machine, CPU time per job is not.
 */

/** The cumulative CPU (µs) of each process of some server, by pid: sampled before and after a measurement. */
export type CpuMeter = () => Promise<Map<number, number>>;

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on every mainstream kernel). */
const TICKS_PER_SECOND = 100;

/** User + system CPU (µs) of a process and all its threads so far; 0 once it has exited. */
export function processCpuUs(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0;
  }
  // Fields after the command (which may hold spaces) start at state (field 3); utime and stime are 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_SECOND;
}

/** A meter over a fixed process (etcd, DynamoDB Local), or none when its pid is unknown. */
export function processMeter(pid: number | undefined): CpuMeter | undefined {
  return pid === undefined ? undefined : async () => new Map([[pid, processCpuUs(pid)]]);
}

/**
 * A meter over a changing set of processes (PostgreSQL backends). A backend
 * that connects during a measurement counts from zero; one that exits during
 * it is lost (the benchmarks keep their connections open, so this is rare).
 */
export function processSetMeter(pids: () => Promise<number[]>): CpuMeter {
  return async () => new Map((await pids()).map((pid) => [pid, processCpuUs(pid)]));
}

/** CPU spent between two samples of a meter, over the processes alive at the second. */
function spentUs(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, us] of after) total += us - (before.get(pid) ?? 0);
  return total;
}

/** User + system CPU (µs) of this process so far. */
export function ownCpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export interface CpuSpent {
  /** CPU of this (the worker) process, µs. */
  workerUs: number;
  /** CPU of the store's server processes, µs; undefined when the store runs in this process. */
  serverUs?: number;
}

/** Runs `fn` and reports the CPU it cost this process and the server behind `server`. */
export async function withCpu<T>(server: CpuMeter | undefined, fn: () => Promise<T>): Promise<T & CpuSpent> {
  const server0 = server ? await server() : undefined;
  const own0 = ownCpuUs();
  const value = await fn();
  const workerUs = ownCpuUs() - own0;
  const serverUs = server && server0 ? spentUs(server0, await server()) : undefined;
  return { ...value, workerUs, ...(serverUs === undefined ? {} : { serverUs }) };
}
