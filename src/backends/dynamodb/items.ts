import {
  type Attempt,
  type AttemptConclusion,
  concatBytes,
  conclusionOf,
  type Edge,
  failedNodesSummary,
  type Metadata,
  type NodeSpec,
  type NodeState,
  type NodeStatus,
  type RetryCounts,
  type Run,
  type RunConclusion,
  type RunIdentity,
  type RunSummary,
  rfc3339,
  runStatus,
  type UpstreamTally,
} from '../../model/index.js';
import { NotFoundError, nodeNotFound } from '../../protocol/index.js';
import { B, type Item, type Key, mk, N, S, type Tx } from './db.js';

/**
 * The table's items and their keys. A run is one partition (`run#<id>`): its
 * header (`#`), its nodes (`n#<name>`; a small run's WAITING nodes in one `w#`
 * until each is first written), its attempts (`a#<node index>#<attempt>`)
 * and their output parts right after them (`a#<i>#<attempt>#o<seq>.<part>`),
 * so inspect is one Query. Leases, agents, work items and stats counters have
 * partitions of their own. Mutable items carry a version `v` that every
 * conditional write compares.
 */
export const SCHEMA_KEY: Key = { pk: 'schema', sk: '#' };
export const runPk = (runId: string) => `run#${runId}`;
export const headerKey = (runId: string): Key => ({ pk: runPk(runId), sk: '#' });
export const nodeKey = (runId: string, name: string): Key => ({ pk: runPk(runId), sk: `n#${name}` });
/** A small run's WAITING nodes as its start planned them, until each is first written (waiting.ts). */
export const waitingKey = (runId: string): Key => ({ pk: runPk(runId), sk: 'w#' });
const pad = (n: number, w: number) => String(n).padStart(w, '0');
/** Attempts and their output parts of node `i`, under one prefix. */
export const attemptsPrefix = (i: number) => `a#${pad(i, 6)}#`;
export const attemptKey = (runId: string, i: number, attempt: number): Key => ({
  pk: runPk(runId),
  sk: `${attemptsPrefix(i)}${pad(attempt, 6)}`,
});
/** Output parts of an attempt: streamed chunk `seq`, split in parts; a finish's tail is seq 999999. */
export const outputPrefix = (i: number, attempt: number) => `${attemptsPrefix(i)}${pad(attempt, 6)}#o`;
export const FINISH_SEQ = 999_999;
export const outputKey = (runId: string, i: number, attempt: number, seq: number, part: number): Key => ({
  pk: runPk(runId),
  sk: `${outputPrefix(i, attempt)}${pad(seq, 6)}.${pad(part, 3)}`,
});
export const LEASES_PK = 'leases';
export const leaseKey = (id: string): Key => ({ pk: LEASES_PK, sk: id });
export const leaseClaimsPk = (leaseId: string) => `lc#${leaseId}`;
/** A start's request id (rule 17) → its run. */
export const requestKey = (requestId: string): Key => ({ pk: 'req', sk: requestId });
export const AGENTS_PK = 'agents';
export const agentKey = (id: string): Key => ({ pk: AGENTS_PK, sk: id });
export const WORK_PK = 'work';
export const STATS_PK = 'stats';
export const RUNS_LIST_PK = 'runs';
export const listSortKey = (createdAt: number, runId: string) => `${pad(createdAt, 15)}#${runId}`;

// ---- runs

export interface RunData {
  createdAt: number;
  total: number;
  edges: number;
  counts: Record<NodeStatus, number>;
  cancelled: boolean;
  failed: boolean;
  conclusion?: RunConclusion;
  finishedAt: number;
  /** A retry too big for one transaction is being applied: claims wait (rule 15). */
  resuming?: boolean;
  /** Name, labels, workflow, params, request id (rule 17). */
  identity?: RunIdentity;
  /** Nodes that failed for good (rule 19): the string set `fn`, added to by finishes. */
  failedNodes?: string[];
  /** Cancelled by its deadline (rule 13): concludes TIMED_OUT. Written with `cancelled`; a retry clears it. */
  timedOut?: boolean;
  /** When its deadline passes (rule 13), ms; a `d` timer waits for it (timing.ts). A retry lifts it. */
  deadlineAt?: number;
}

export interface RunItem {
  id: string;
  v: number;
  d: RunData;
}

/**
 * The header's node counts live in attributes of their own (cW, cR, cU, cC)
 * changed only by ADD, and its cancelled and resuming marks in `cx` and `rz`:
 * a claim (READY → RUNNING) adds to the counts conditioned on the marks'
 * absence without bumping the version, so claims of one run never refuse
 * each other; every other transition compares the version and writes the
 * rest (`d`), adding its own count changes.
 */
const COUNT_ATTRS: [NodeStatus, string][] = [
  ['WAITING', 'cW'],
  ['READY', 'cR'],
  ['RUNNING', 'cU'],
  ['COMPLETED', 'cC'],
];

/** The header's `d`: its data but for what lives in attributes of its own (counts, marks, failed nodes). */
function headerJson(d: RunData): string {
  const { counts: _c, cancelled: _x, resuming: _r, failed: _f, failedNodes: _n, ...rest } = d;
  return JSON.stringify(rest);
}

export function encodeRun(r: RunItem): Item {
  const { counts, cancelled, resuming, failed } = r.d;
  const item: Item = {
    ...keyItem(headerKey(r.id)),
    v: N(r.v),
    d: S(headerJson(r.d)),
    lpk: S(RUNS_LIST_PK),
    lsk: S(listSortKey(r.d.createdAt, r.id)),
  };
  for (const [st, a] of COUNT_ATTRS) item[a] = N(counts[st]);
  if (cancelled) item.cx = { BOOL: true };
  if (resuming) item.rz = { BOOL: true };
  if (failed) item.fx = { BOOL: true };
  return item;
}

export function decodeRun(item: Item): RunItem {
  const rest = JSON.parse(item.d!.S!);
  const counts = { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 };
  for (const [st, a] of COUNT_ATTRS) counts[st] = Number(item[a]?.N ?? 0);
  return {
    id: item.pk!.S!.slice(4),
    v: Number(item.v!.N),
    d: {
      ...rest,
      counts,
      cancelled: item.cx !== undefined,
      failed: item.fx !== undefined,
      failedNodes: item.fn?.SS ?? [],
      resuming: item.rz !== undefined ? true : undefined,
    },
  };
}

/** Writes the header as `d` over what was read (`before`), conditioned on its version; counts as additions. */
export function writeHeader(tx: Tx, before: RunItem, d: RunData, extraCondition = ''): void {
  const { counts, cancelled, resuming, failed, failedNodes } = d;
  const values: Item = { ':d': S(headerJson(d)), ':nv': N(before.v + 1), ':v': N(before.v) };
  const set = ['d = :d', 'v = :nv'];
  const remove: string[] = [];
  const add: string[] = [];
  if (cancelled) {
    set.push('cx = :t');
    values[':t'] = { BOOL: true };
  } else remove.push('cx');
  if (resuming) {
    set.push('rz = :t');
    values[':t'] = { BOOL: true };
  } else remove.push('rz');
  if (failed) {
    set.push('fx = :t');
    values[':t'] = { BOOL: true };
  } else remove.push('fx');
  for (const [st, a] of COUNT_ATTRS) {
    const delta = counts[st] - before.d.counts[st];
    if (delta === 0) continue;
    add.push(`${a} :${a}`);
    values[`:${a}`] = N(delta);
  }
  // Rule 19: nodes no longer failed (a retry put them back) leave the set.
  const gone = (before.d.failedNodes ?? []).filter((n) => !(failedNodes ?? []).includes(n));
  const del = gone.length > 0 ? ' DELETE fn :gone' : '';
  if (del) values[':gone'] = { SS: gone };
  tx.update(headerKey(before.id), {
    UpdateExpression: `SET ${set.join(', ')}${remove.length ? ` REMOVE ${remove.join(', ')}` : ''}${add.length ? ` ADD ${add.join(', ')}` : ''}${del}`,
    ConditionExpression: `v = :v${extraCondition}`,
    ExpressionAttributeValues: values,
  });
}

/**
 * A transition's change to the header without its version: node counts
 * added, the failed mark set, conditioned on the run not being cancelled
 * (finishes, cascades) or on its being cancelled (a cancel's own chunks).
 * Transitions of one run so never refuse each other; the run is sealed after
 * (sealRun), or by the finish that completes it, in this same change (`seal`).
 */
export function addToHeader(
  tx: Tx,
  runId: string,
  before: RunData,
  after: RunData,
  open: boolean,
  /**
   * Rule 7 in the finish that completes the run's last open nodes (one write,
   * not a second transaction: see sealRun): the header as read, when every
   * node is completed by the counts after this change; the conclusion and
   * finishedAt are written with the counts, conditioned on the version and
   * completed count read, so a retry or completion that came between refuses
   * the change. Returns the conclusion, when it sealed.
   */
  seal?: { read: RunItem; now: number },
): RunConclusion | undefined {
  const values: Item = {};
  const add: string[] = [];
  for (const [st, a] of COUNT_ATTRS) {
    const delta = after.counts[st] - before.counts[st];
    if (delta === 0) continue;
    add.push(`${a} :${a}`);
    values[`:${a}`] = N(delta);
  }
  const set: string[] = [];
  if (after.failed && !before.failed) {
    set.push('fx = :t');
    values[':t'] = { BOOL: true };
  }
  const failedNow = (after.failedNodes ?? []).filter((n) => !(before.failedNodes ?? []).includes(n));
  if (failedNow.length > 0) {
    add.push('fn :fn');
    values[':fn'] = { SS: failedNow };
  }
  // A cancel's chunks hold only while the run is still cancelled: a late sweeper never undoes a retry.
  let cond = open ? 'attribute_exists(pk) AND attribute_not_exists(cx)' : 'attribute_exists(cx)';
  let sealed: RunData | undefined;
  if (seal && !seal.read.d.conclusion) {
    sealed = structuredClone(after);
    sealIfDone(sealed, seal.now);
  }
  if (sealed?.conclusion) {
    set.unshift('d = :d', 'v = :nv');
    cond += ' AND v = :v AND cC = :done';
    values[':d'] = S(headerJson(sealed));
    values[':nv'] = N(seal!.read.v + 1);
    values[':v'] = N(seal!.read.v);
    values[':done'] = N(seal!.read.d.counts.COMPLETED);
  } else if (add.length === 0 && set.length === 0) {
    tx.check(headerKey(runId), cond);
    return undefined;
  }
  tx.update(headerKey(runId), {
    UpdateExpression:
      `${set.length ? `SET ${set.join(', ')} ` : ''}${add.length ? `ADD ${add.join(', ')}` : ''}`.trim(),
    ConditionExpression: cond,
    ExpressionAttributeValues: values,
  });
  return sealed?.conclusion;
}

/** Claims' change to the header: `n` nodes READY → RUNNING (negative: released back), unless the run is cancelled or being resumed. */
export function claimHeader(tx: Tx, runId: string, n = 1): void {
  tx.update(headerKey(runId), {
    UpdateExpression: 'ADD cR :m, cU :p',
    ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(cx) AND attribute_not_exists(rz)',
    ExpressionAttributeValues: { ':m': N(-n), ':p': N(n) },
  });
}

/** The run is neither cancelled nor being resumed (an orphan's claim changes no count). */
export function checkHeaderOpen(tx: Tx, runId: string): void {
  tx.check(
    headerKey(runId),
    'attribute_exists(pk) AND attribute_not_exists(cx) AND attribute_not_exists(rz)',
  );
}

/** The header after `from` → `to` status changes of its nodes (counts, then completion with its conclusion). */
export function moved(d: RunData, from: NodeStatus, to: NodeStatus): void {
  d.counts[from]--;
  d.counts[to]++;
}

/** Completes the run when every node did and no retry is being applied (rule 7). */
export function sealIfDone(d: RunData, now: number): void {
  if (d.conclusion || d.resuming || d.counts.COMPLETED !== d.total) return;
  d.conclusion = conclusionOf(d);
  d.finishedAt = now;
}

export function summaryOf(r: RunItem): RunSummary {
  const { params: _params, ...identity } = r.d.identity ?? {};
  const failed = [...(r.d.failedNodes ?? [])].sort();
  return {
    ...failedNodesSummary(failed, failed.length),
    ...structuredClone(identity),
    id: r.id,
    createdAt: rfc3339(r.d.createdAt),
    status: runStatus(r.d.counts),
    conclusion: r.d.conclusion,
    finishedAt: r.d.finishedAt ? rfc3339(r.d.finishedAt) : undefined,
    nodeCounts: { ...r.d.counts },
  };
}

// ---- nodes

export interface ClaimData {
  id: string;
  agentId: string;
  metadata: Metadata;
  leaseId: string;
  orphaned: boolean;
}

export interface NodeData {
  /** Position in the spec (attempt keys use it; inspect orders by it). */
  i: number;
  spec: NodeSpec;
  up: string[];
  down: string[];
  /** Inbound edges: [edge index in the spec, source], so the run's edges come back in order. */
  ein: [number, string][];
  status: NodeStatus;
  tally: UpstreamTally;
  retries: RetryCounts;
  attempts: number;
  last?: AttemptConclusion;
  /** The claim the last attempt was recorded under (a finish retried in doubt recognises its own). */
  lastClaim?: string;
  /** The mark of the finish call that recorded it (a timeout's finish under the same claim is not the agent's). */
  lf?: string;
  /** The claims that finish handed off (rule 21, hand-off.ts): [dependent, claim id]. */
  ho?: [string, string][];
  startedAt: number;
  finishedAt: number;
  claim?: ClaimData;
  /** Upstream name → its attempt whose output is this node's input (filled at claim). */
  inputs: Record<string, number>;
  /**
   * Inputs recorded as the upstream nodes succeed (rule 2), so a claim need
   * not read them: upstream name → where its successful attempt is. A node
   * becomes READY only once all its upstream nodes completed (rule 14), so at
   * its claim this holds every input. Absent (a retry put the node back, or a
   * run started before it was kept): the claim reads the upstream nodes.
   */
  ins?: Record<string, RecordedInput>;
  abr: number;
  /**
   * The latest attempt (number `attempts`), kept in the node item so that a
   * finish writes no attempt item of its own; the one before it moves to its
   * attempt item (`a#<i>#<attempt>`) when the next is recorded (recordAttempt).
   */
  la?: AttemptData;
  /** Bytes of the last attempt's output (a claim of a dependent reads no input that is empty). */
  out?: number;
  /** The running attempt's next output seq and bytes streamed so far. */
  seq: number;
  live: number;
  /** A READY node's retry delay (rule 5): claimable from then (ms); out of the ready index until an `r` timer releases it. */
  readyAt?: number;
}

/** An upstream's successful attempt as a dependent's input: [its node index, the attempt, 1 when its output is empty]. */
export type RecordedInput = [number, number, 0 | 1];

export interface NodeItem {
  runId: string;
  v: number;
  d: NodeData;
}

/** `hidden`: without the ready index's attributes (a start's nodes before its header exists). */
export function encodeNode(n: NodeItem, hidden = false): Item {
  const item: Item = {
    ...keyItem(nodeKey(n.runId, n.d.spec.name)),
    v: N(n.v),
    d: S(JSON.stringify(n.d)),
  };
  // The sparse `ready` index: READY nodes and orphaned claims, by runtime (rule 8's catch-up).
  const ev =
    n.d.status === 'READY' && !n.d.readyAt
      ? 'R'
      : n.d.status === 'RUNNING' && n.d.claim?.orphaned
        ? 'O'
        : undefined;
  if (ev && !hidden) {
    item.rt = S(n.d.spec.runtime);
    item.rk = S(`${n.runId}#${n.d.spec.name}`);
    item.ev = S(ev);
  }
  return item;
}

export function decodeNode(item: Item): NodeItem {
  return { runId: item.pk!.S!.slice(4), v: Number(item.v!.N), d: JSON.parse(item.d!.S!) };
}

/** A run's header and one of its nodes from a read of both: NotFoundError names whichever is missing. */
export function runAndNode(
  read: Map<string, Item>,
  runId: string,
  name: string,
  /** The header to use instead of one read (a finish's unreadHeader). */
  header?: RunItem,
): { header: RunItem; node: NodeItem } {
  const headerItem = header ? undefined : read.get(mk(headerKey(runId)));
  if (!header && !headerItem) throw new NotFoundError('run', runId);
  const nodeItem = read.get(mk(nodeKey(runId, name)));
  if (!nodeItem) throw nodeNotFound(runId, name);
  return { header: header ?? decodeRun(headerItem!), node: decodeNode(nodeItem) };
}

/**
 * A header a finish did not read (see readForFinish): no counts, no marks,
 * so what a plan moves on it is exactly the additions addToHeader writes.
 * Nothing is decided from it: the commit's condition checks the run exists
 * and is not cancelled, and a finish that may complete the run seals it
 * after the commit (sealRun, which reads the header).
 */
export function unreadHeader(runId: string): RunItem {
  return {
    id: runId,
    v: -1,
    d: {
      createdAt: 0,
      total: 0,
      edges: 0,
      counts: { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 },
      cancelled: false,
      failed: false,
      finishedAt: 0,
      failedNodes: [],
    },
  };
}

/** A node item written anew: the same node at the next version. */
export function next(n: NodeItem, d: NodeData): NodeItem {
  return { runId: n.runId, v: n.v + 1, d };
}

// ---- attempts

export interface AttemptData {
  conclusion: AttemptConclusion;
  metadata: Metadata;
  claimId: string;
  agentId: string;
  startedAt: number;
  finishedAt: number;
}

export function encodeAttempt(runId: string, i: number, n: number, a: AttemptData): Item {
  return { ...keyItem(attemptKey(runId, i, n)), d: S(JSON.stringify(a)) };
}

/**
 * Records attempt `after.attempts` (= `before.attempts + 1`) as `after`'s
 * latest, in the node item; the latest before it, if kept in the node, moves
 * to its own attempt item in the same transaction.
 */
export function recordAttempt(
  tx: Tx,
  runId: string,
  before: NodeData,
  after: NodeData,
  a: AttemptData,
): void {
  if (before.la) tx.put(encodeAttempt(runId, before.i, before.attempts, before.la), 'any');
  after.la = a;
}

/** Output items of bytes at `seq`, split in parts of `partBytes`. */
export function encodeOutput(
  runId: string,
  i: number,
  attempt: number,
  seq: number,
  bytes: Uint8Array,
  partBytes: number,
): Item[] {
  const out: Item[] = [];
  for (let p = 0, at = 0; at < bytes.byteLength; p++, at += partBytes)
    out.push({ ...keyItem(outputKey(runId, i, attempt, seq, p)), b: B(bytes.subarray(at, at + partBytes)) });
  return out;
}

export function keyItem(k: Key): Item {
  return { pk: S(k.pk), sk: S(k.sk) };
}

// ---- reading a run's partition back

/** A node's attempts and output from its items (attempt items, each followed by its output parts). */
export function attemptsOf(
  items: Item[],
  i: number,
): { attempts: Map<number, AttemptData>; outputs: Map<number, Uint8Array[]> } {
  const prefix = attemptsPrefix(i);
  const attempts = new Map<number, AttemptData>();
  const outputs = new Map<number, Uint8Array[]>();
  for (const item of items) {
    const sk = item.sk!.S!;
    if (!sk.startsWith(prefix)) continue;
    const n = Number(sk.slice(prefix.length, prefix.length + 6));
    if (sk.length === prefix.length + 6) attempts.set(n, JSON.parse(item.d!.S!));
    else {
      const parts = outputs.get(n) ?? [];
      outputs.set(n, parts);
      parts.push(item.b!.B!);
    }
  }
  return { attempts, outputs };
}

export function nodeState(
  n: NodeData,
  attempts: Map<number, AttemptData>,
  outputs: Map<number, Uint8Array[]>,
  inputs: Record<string, Uint8Array>,
): NodeState {
  const list: Attempt[] = [];
  for (let k = 1; k <= n.attempts; k++) {
    const a = k === n.attempts && n.la ? n.la : attempts.get(k);
    if (!a) continue;
    list.push({
      conclusion: a.conclusion,
      metadata: a.metadata,
      output: concatBytes(outputs.get(k) ?? []),
      claimId: a.claimId,
      agentId: a.agentId,
      startedAt: a.startedAt ? rfc3339(a.startedAt) : '',
      finishedAt: rfc3339(a.finishedAt),
    });
  }
  const c = n.claim;
  const running = n.status === 'RUNNING';
  const live = running && n.live > 0 ? concatBytes(outputs.get(n.attempts + 1) ?? []) : undefined;
  return {
    spec: n.spec,
    status: n.status,
    attempts: list,
    startedAt: n.startedAt ? rfc3339(n.startedAt) : '',
    finishedAt: n.finishedAt ? rfc3339(n.finishedAt) : '',
    inputs,
    claim: c ? { id: c.id, agentId: c.agentId, metadata: c.metadata, orphaned: c.orphaned } : undefined,
    liveOutput: live && live.byteLength > 0 ? live : undefined,
    ...(n.abr > 0 ? { attemptsBeforeRetry: n.abr } : {}),
    ...(n.status === 'READY' && n.readyAt ? { nextAttemptAt: rfc3339(n.readyAt) } : {}),
  };
}

/** The run from its partition's items (header, nodes, attempts, outputs). */
export function runFromItems(header: RunItem, items: Item[]): Run {
  const nodes: NodeData[] = [];
  const byIndex = new Map<number, Item[]>();
  for (const item of items) {
    const sk = item.sk!.S!;
    if (sk.startsWith('n#')) nodes.push(decodeNode(item).d);
    else if (sk.startsWith('a#')) {
      const i = Number(sk.slice(2, 8));
      const list = byIndex.get(i) ?? [];
      byIndex.set(i, list);
      list.push(item);
    }
  }
  nodes.sort((a, b) => a.i - b.i);
  const byName = new Map(nodes.map((n) => [n.spec.name, n]));
  const edges: [number, Edge][] = [];
  const states = nodes.map((n) => {
    for (const [k, source] of n.ein) edges.push([k, { source, destination: n.spec.name }]);
    const { attempts, outputs } = attemptsOf(byIndex.get(n.i) ?? [], n.i);
    const inputs: Record<string, Uint8Array> = {};
    for (const [up, k] of Object.entries(n.inputs)) {
      const u = byName.get(up);
      if (!u) continue;
      inputs[up] = concatBytes(attemptsOf(byIndex.get(u.i) ?? [], u.i).outputs.get(k) ?? []);
    }
    return nodeState(n, attempts, outputs, inputs);
  });
  edges.sort((a, b) => a[0] - b[0]);
  const d = header.d;
  return {
    id: header.id,
    createdAt: rfc3339(d.createdAt),
    nodes: states,
    edges: edges.map((e) => e[1]),
    status: runStatus(d.counts),
    conclusion: d.conclusion,
    finishedAt: d.finishedAt ? rfc3339(d.finishedAt) : undefined,
    ...(d.deadlineAt ? { deadlineAt: rfc3339(d.deadlineAt) } : {}),
    ...structuredClone(d.identity ?? {}),
  };
}

/** Whether the run's conclusion is as rules.ts would say: kept here so RunData stays plain. */
export function statsDelta(): Record<NodeStatus, number> {
  return { WAITING: 0, READY: 0, RUNNING: 0, COMPLETED: 0 };
}
