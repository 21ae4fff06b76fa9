import type {
  Attempt,
  AttemptConclusion,
  Metadata,
  NodeSpec,
  NodeState,
  NodeStatus,
  RunConclusion,
} from '../../model/index.js';
import { rfc3339 } from '../../model/index.js';

/** What the keys hold, and how it becomes the protocol's types. JSON except attempts (binary output). */

export interface RunRecord {
  id: string;
  /** ms since the epoch. */
  createdAt: number;
  /** Node count. */
  n: number;
  /** Runtimes of its nodes (keys to delete with it). */
  rts: string[];
  cancelled?: boolean;
  /** Cancelled by its deadline (rule 13): concludes TIMED_OUT. Written with `cancelled`. */
  to?: boolean;
  /**
   * When its deadline passes (rule 13), ms; a k/<run>/deadline work item waits for it (timing.ts). 0: lifted by a
   * retry (a deadline item read before the retry must not cancel the run; absent, as older stores wrote runs, it
   * may).
   */
  dl?: number;
  /** Written once every node completed (a cache: readers derive it when absent). */
  conclusion?: RunConclusion;
  /** ms since the epoch, written with the conclusion (when the run was sealed). */
  finishedAt?: number;
  /** Set while a retry puts its nodes back (rule 15): no claims, no seal until it is done. */
  resuming?: boolean;
  /** The start's request id (rule 17): its q/ key goes with the run. The rest of its identity is in m/<run>. */
  q?: string;
}

export interface ClaimRecord {
  id: string;
  agent: string;
  md: Metadata;
  /** The holder's lease, decimal. The claim key holds `id` under it: finish compares both (fencing). */
  lease: string;
}

export interface NodeRecord {
  /** Position in the run's spec. */
  i: number;
  spec: NodeSpec;
  up: string[];
  down: string[];
  s: NodeStatus;
  /** Upstream nodes not yet succeeded. */
  p: number;
  /**
   * Upstream nodes that completed without succeeding: 'f' failed, 'n'
   * neither (unreached, cancelled). With p, what the trigger decides from
   * (rule 14); a set, so a repeated cascade step counts nobody twice.
   */
  dn?: Record<string, 'f' | 'n'>;
  /** Attempts recorded before the run's latest retry (rule 15). */
  rb?: number;
  /** Attempts recorded; FAIL and ERROR ones counted apart for the retry rule. */
  a: number;
  f: number;
  e: number;
  st?: number;
  ft?: number;
  c?: ClaimRecord;
  /**
   * What the running attempt (number a + 1) streamed: chunks appended (the
   * next chunk's seq) and bytes. Kept on the node so an append and a finish
   * compare the same key; cleared when the attempt is recorded.
   */
  o?: { n: number; l: number };
  /** When a READY node waiting out its retry delay becomes claimable (ms, rule 5); unset when it is now. */
  ra?: number;
}

export const encodeJson = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
export const decodeJson = <T>(b: Buffer): T => JSON.parse(b.toString()) as T;

interface AttemptHeader {
  c: AttemptConclusion;
  md: Metadata;
  cl: string;
  ag: string;
  st: string;
  ft: string;
}

/** An attempt: 4-byte header length, JSON header, raw output (no base64: outputs reach 1 MiB). */
export function encodeAttempt(a: Attempt): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      c: a.conclusion,
      md: a.metadata,
      cl: a.claimId,
      ag: a.agentId,
      st: a.startedAt,
      ft: a.finishedAt,
    } satisfies AttemptHeader),
  );
  const len = Buffer.alloc(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, a.output]);
}

export function decodeAttempt(b: Buffer): Attempt {
  const n = b.readUInt32BE(0);
  const h = JSON.parse(b.subarray(4, 4 + n).toString()) as AttemptHeader;
  return {
    conclusion: h.c,
    metadata: h.md,
    output: new Uint8Array(b.subarray(4 + n)),
    claimId: h.cl,
    agentId: h.ag,
    startedAt: h.st,
    finishedAt: h.ft,
  };
}

/** The last attempt's output (a successful upstream's result) without decoding the header's JSON. */
export function attemptOutput(b: Buffer): Uint8Array {
  return new Uint8Array(b.subarray(4 + b.readUInt32BE(0)));
}

export function nodeState(
  rec: NodeRecord,
  attempts: Attempt[],
  inputs: Record<string, Uint8Array>,
  orphaned: boolean,
  liveOutput?: Uint8Array,
): NodeState {
  return {
    spec: rec.spec,
    status: rec.s,
    attempts,
    startedAt: rec.st ? rfc3339(rec.st) : '',
    finishedAt: rec.ft ? rfc3339(rec.ft) : '',
    inputs,
    claim: rec.c ? { id: rec.c.id, agentId: rec.c.agent, metadata: rec.c.md, orphaned } : undefined,
    liveOutput: rec.s === 'RUNNING' && liveOutput && liveOutput.byteLength > 0 ? liveOutput : undefined,
    ...(rec.s === 'READY' && rec.ra ? { nextAttemptAt: rfc3339(rec.ra) } : {}),
    ...(rec.rb ? { attemptsBeforeRetry: rec.rb } : {}),
  };
}
