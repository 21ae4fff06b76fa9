import { create, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import {
  type AgentInfo,
  type Attempt,
  type AttemptConclusion,
  type Backoff,
  emptyNodeCounts,
  type GraphSpec,
  type Metadata,
  type NodeSpec,
  type NodeState,
  type NodeStatus,
  RETRY_CONCLUSIONS,
  type Run,
  type RunConclusion,
  type RunIdentity,
  type RunStatus,
  type RunSummary,
  type Stats,
  type TriggerRule,
} from './types.js';

/** Conversions between the domain types and the protobuf wire types, plus graph JSON parsing. */

export class GraphParseError extends Error {}

/**
 * Parses a graph from its canonical proto3 JSON form (snake_case or camelCase).
 * Throws GraphParseError naming the problem; does not validate the graph's shape (see validate.ts).
 */
export function graphFromJson(json: unknown): GraphSpec {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new GraphParseError('graph must be a JSON object with "nodes" and "edges"');
  try {
    return graphFromProto(fromJson(pb.GraphSpecSchema, json as JsonValue));
  } catch (e) {
    throw new GraphParseError(`graph JSON: ${(e as Error).message}`);
  }
}

export function graphFromJsonText(text: string): GraphSpec {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new GraphParseError(`graph is not valid JSON: ${(e as Error).message}`);
  }
  return graphFromJson(json);
}

export function graphToJson(spec: GraphSpec): JsonValue {
  return toJson(pb.GraphSpecSchema, graphToProto(spec));
}

/**
 * Sets an own property even for `__proto__`, which plain assignment would
 * turn into a prototype change (dropping the entry): the key then reaches
 * validation, which refuses it, instead of vanishing on the way.
 */
function setOwn<T>(o: Record<string, T>, k: string, v: T): void {
  if (k === '__proto__')
    Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
  else o[k] = v;
}

export function metadataFromProto(m: { [k: string]: pb.MetadataValues }): Metadata {
  const out: Metadata = {};
  for (const [k, v] of Object.entries(m)) setOwn(out, k, [...v.values]);
  return out;
}

function metadataToProto(m: Metadata): { [k: string]: pb.MetadataValues } {
  const out: { [k: string]: pb.MetadataValues } = {};
  for (const [k, values] of Object.entries(m)) out[k] = create(pb.MetadataValuesSchema, { values });
  return out;
}

/** A backoff from the wire: absent fields (proto3 zero values) stay absent, so the spec round-trips. */
function backoffFromProto(b: pb.Backoff | undefined): Backoff | undefined {
  if (!b) return undefined;
  return {
    initial: b.initial,
    ...(b.factor ? { factor: b.factor } : {}),
    ...(b.max ? { max: b.max } : {}),
    ...(b.jitter ? { jitter: b.jitter } : {}),
  };
}

function backoffToProto(b: Backoff | undefined): pb.Backoff | undefined {
  if (!b) return undefined;
  return create(pb.BackoffSchema, {
    initial: b.initial,
    factor: b.factor ?? 0,
    max: b.max ?? '',
    jitter: b.jitter ?? 0,
  });
}

export function nodeSpecFromProto(n: pb.NodeSpec): NodeSpec {
  const retry: NodeSpec['retry'] = {};
  for (const [k, v] of Object.entries(n.retry)) {
    const backoff = backoffFromProto(v.backoff);
    setOwn(retry, k, backoff ? { maxAttempts: v.maxAttempts, backoff } : { maxAttempts: v.maxAttempts });
  }
  const spec: NodeSpec = {
    name: n.name,
    runtime: n.runtime,
    metadata: metadataFromProto(n.metadata),
    retry,
    ...(n.timeout ? { timeout: n.timeout } : {}),
  };
  // Kept as sent (validation names an unknown rule); empty is the default.
  if (n.trigger) spec.trigger = n.trigger as TriggerRule;
  return spec;
}

export function nodeSpecToProto(n: NodeSpec): pb.NodeSpec {
  const retry: { [k: string]: pb.RetrySpec } = {};
  for (const k of RETRY_CONCLUSIONS) {
    const r = n.retry[k];
    if (r)
      retry[k] = create(pb.RetrySpecSchema, {
        maxAttempts: r.maxAttempts,
        backoff: backoffToProto(r.backoff),
      });
  }
  return create(pb.NodeSpecSchema, {
    name: n.name,
    runtime: n.runtime,
    metadata: metadataToProto(n.metadata),
    retry,
    timeout: n.timeout ?? '',
    trigger: n.trigger ?? '',
  });
}

export function graphFromProto(g: pb.GraphSpec): GraphSpec {
  return {
    nodes: g.nodes.map(nodeSpecFromProto),
    edges: g.edges.map((e) => ({ source: e.source, destination: e.destination })),
    ...(g.deadline ? { deadline: g.deadline } : {}),
  };
}

export function graphToProto(g: GraphSpec): pb.GraphSpec {
  return create(pb.GraphSpecSchema, {
    nodes: g.nodes.map(nodeSpecToProto),
    edges: g.edges.map((e) => create(pb.EdgeSchema, e)),
    deadline: g.deadline ?? '',
  });
}

const NODE_STATUS: Record<NodeStatus, pb.Node_Status> = {
  WAITING: pb.Node_Status.WAITING,
  READY: pb.Node_Status.READY,
  RUNNING: pb.Node_Status.RUNNING,
  COMPLETED: pb.Node_Status.COMPLETED,
};
const ATTEMPT_CONCLUSION: Record<AttemptConclusion, pb.Attempt_Conclusion> = {
  SUCCESS: pb.Attempt_Conclusion.SUCCESS,
  FAIL: pb.Attempt_Conclusion.FAIL,
  ERROR: pb.Attempt_Conclusion.ERROR,
  CANCELLED: pb.Attempt_Conclusion.CANCELLED,
};
const RUN_STATUS: Record<RunStatus, pb.Run_Status> = {
  WAITING: pb.Run_Status.WAITING,
  RUNNING: pb.Run_Status.RUNNING,
  COMPLETED: pb.Run_Status.COMPLETED,
};
const RUN_CONCLUSION: Record<RunConclusion, pb.Run_Conclusion> = {
  SUCCESS: pb.Run_Conclusion.SUCCESS,
  FAIL: pb.Run_Conclusion.FAIL,
  CANCELLED: pb.Run_Conclusion.CANCELLED,
  TIMED_OUT: pb.Run_Conclusion.TIMED_OUT,
};

function invert<K extends string, V extends number>(m: Record<K, V>): Map<V, K> {
  return new Map(Object.entries(m).map(([k, v]) => [v as V, k as K]));
}
const NODE_STATUS_BACK = invert(NODE_STATUS);
const ATTEMPT_CONCLUSION_BACK = invert(ATTEMPT_CONCLUSION);
const RUN_STATUS_BACK = invert(RUN_STATUS);
const RUN_CONCLUSION_BACK = invert(RUN_CONCLUSION);

export const runStatusToProto = (s: RunStatus) => RUN_STATUS[s];
export const runConclusionToProto = (c: RunConclusion | undefined) =>
  c ? RUN_CONCLUSION[c] : pb.Run_Conclusion.UNSPECIFIED;
export const runStatusFromProto = (s: pb.Run_Status): RunStatus => RUN_STATUS_BACK.get(s) ?? 'WAITING';
export const runConclusionFromProto = (c: pb.Run_Conclusion): RunConclusion | undefined =>
  RUN_CONCLUSION_BACK.get(c);

export function attemptToProto(a: Attempt): pb.Attempt {
  return create(pb.AttemptSchema, {
    conclusion: ATTEMPT_CONCLUSION[a.conclusion],
    metadata: metadataToProto(a.metadata),
    output: a.output,
    claimId: a.claimId,
    agentId: a.agentId,
    startedAt: a.startedAt,
    finishedAt: a.finishedAt,
    outputOmitted: a.omittedOutputBytes !== undefined,
    outputSize: BigInt(a.omittedOutputBytes ?? a.output.byteLength),
  });
}

/**
 * The run with attempt outputs and node inputs kept within `budget` bytes:
 * each node's last attempt first (what a reader wants most), then earlier
 * attempts newest first, then inputs; the rest are left out and marked with
 * their size. Inputs come last: each is a copy of an upstream node's output
 * (a 1 MiB output fanned out to 20,000 nodes made a 20 GB read). A shallow copy.
 */
export function withOutputBudget(run: Run, budget: number): Run {
  let left = budget;
  const keep = new Set<Attempt>();
  const take = (a: Attempt | undefined) => {
    if (!a || a.output.byteLength > left) return;
    left -= a.output.byteLength;
    keep.add(a);
  };
  for (const n of run.nodes) take(n.attempts[n.attempts.length - 1]);
  for (const n of run.nodes) for (let i = n.attempts.length - 2; i >= 0; i--) take(n.attempts[i]);
  const trim = (a: Attempt): Attempt =>
    keep.has(a) || a.output.byteLength === 0
      ? a
      : { ...a, output: new Uint8Array(), omittedOutputBytes: a.output.byteLength };
  return {
    ...run,
    nodes: run.nodes.map((n) => {
      const inputs = inputsWithin(n, left);
      left = inputs.left;
      return { ...n, attempts: n.attempts.map(trim), ...inputs.node };
    }),
  };
}

/**
 * A node's inputs kept within `budget` bytes, the rest marked with their size
 * (omittedInputBytes); what the budget has left after them. A watch's node
 * messages hold one node each, and each its own budget.
 */
export function inputsWithin(
  n: NodeState,
  budget: number,
): { node: Pick<NodeState, 'inputs' | 'omittedInputBytes'>; left: number } {
  let left = budget;
  let inputs = n.inputs;
  let omitted: Record<string, number> | undefined;
  for (const [name, bytes] of Object.entries(n.inputs)) {
    if (bytes.byteLength <= left) {
      left -= bytes.byteLength;
      continue;
    }
    if (!omitted) {
      omitted = {};
      inputs = { ...n.inputs };
    }
    omitted[name] = bytes.byteLength;
    delete inputs[name];
  }
  return { node: omitted ? { inputs, omittedInputBytes: omitted } : { inputs }, left };
}

export function nodeToProto(n: NodeState): pb.Node {
  return create(pb.NodeSchema, {
    spec: nodeSpecToProto(n.spec),
    status: NODE_STATUS[n.status],
    attempts: n.attempts.map(attemptToProto),
    startedAt: n.startedAt,
    finishedAt: n.finishedAt,
    inputs: { ...n.inputs },
    claim: n.claim
      ? create(pb.ClaimSchema, {
          id: n.claim.id,
          agentId: n.claim.agentId,
          metadata: metadataToProto(n.claim.metadata),
          orphaned: n.claim.orphaned,
        })
      : undefined,
    liveOutput: n.liveOutput,
    nextAttemptAt: n.nextAttemptAt ?? '',
    attemptsBeforeRetry: n.attemptsBeforeRetry ?? 0,
    omittedInputs: Object.fromEntries(
      Object.entries(n.omittedInputBytes ?? {}).map(([k, v]) => [k, BigInt(v)]),
    ),
  });
}

export function nodeFromProto(n: pb.Node): NodeState {
  return {
    spec: nodeSpecFromProto(n.spec ?? create(pb.NodeSpecSchema)),
    status: NODE_STATUS_BACK.get(n.status) ?? 'WAITING',
    attempts: n.attempts.map((a) => ({
      conclusion: ATTEMPT_CONCLUSION_BACK.get(a.conclusion) ?? 'ERROR',
      metadata: metadataFromProto(a.metadata),
      output: a.output,
      claimId: a.claimId,
      agentId: a.agentId,
      startedAt: a.startedAt,
      finishedAt: a.finishedAt,
      ...(a.outputOmitted ? { omittedOutputBytes: Number(a.outputSize) } : {}),
    })),
    startedAt: n.startedAt,
    finishedAt: n.finishedAt,
    inputs: { ...n.inputs },
    claim: n.claim
      ? {
          id: n.claim.id,
          agentId: n.claim.agentId,
          metadata: metadataFromProto(n.claim.metadata),
          orphaned: n.claim.orphaned,
        }
      : undefined,
    liveOutput: n.liveOutput.byteLength > 0 ? n.liveOutput : undefined,
    ...(n.nextAttemptAt ? { nextAttemptAt: n.nextAttemptAt } : {}),
    ...(n.attemptsBeforeRetry > 0 ? { attemptsBeforeRetry: n.attemptsBeforeRetry } : {}),
    ...(Object.keys(n.omittedInputs).length > 0
      ? {
          omittedInputBytes: Object.fromEntries(
            Object.entries(n.omittedInputs).map(([k, v]) => [k, Number(v)]),
          ),
        }
      : {}),
  };
}

export function countNodes(nodes: readonly { status: NodeStatus }[]): Record<NodeStatus, number> {
  const counts = emptyNodeCounts();
  for (const n of nodes) counts[n.status]++;
  return counts;
}

function countsToProto(c: Record<NodeStatus, number>): pb.NodeCounts {
  return create(pb.NodeCountsSchema, {
    waiting: BigInt(c.WAITING),
    ready: BigInt(c.READY),
    running: BigInt(c.RUNNING),
    completed: BigInt(c.COMPLETED),
  });
}

export function runToProto(r: Run): pb.Run {
  return create(pb.RunSchema, {
    id: r.id,
    createdAt: r.createdAt,
    nodes: r.nodes.map(nodeToProto),
    edges: r.edges.map((e) => create(pb.EdgeSchema, e)),
    status: RUN_STATUS[r.status],
    conclusion: runConclusionToProto(r.conclusion),
    nodeCounts: countsToProto(countNodes(r.nodes)),
    finishedAt: r.finishedAt ?? '',
    deadlineAt: r.deadlineAt ?? '',
    ...identityToProto(r),
  });
}

export function runSummaryToProto(r: RunSummary): pb.Run {
  return create(pb.RunSchema, {
    id: r.id,
    createdAt: r.createdAt,
    status: RUN_STATUS[r.status],
    conclusion: runConclusionToProto(r.conclusion),
    nodeCounts: countsToProto(r.nodeCounts),
    finishedAt: r.finishedAt ?? '',
    failedNodes: r.failedNodes,
    failedNodeCount: BigInt(r.failedNodeCount),
    ...identityToProto(r),
  });
}

export function runFromProto(r: pb.Run): Run {
  return {
    id: r.id,
    createdAt: r.createdAt,
    nodes: r.nodes.map(nodeFromProto),
    edges: r.edges.map((e) => ({ source: e.source, destination: e.destination })),
    status: RUN_STATUS_BACK.get(r.status) ?? 'WAITING',
    conclusion: RUN_CONCLUSION_BACK.get(r.conclusion),
    finishedAt: r.finishedAt || undefined,
    ...(r.deadlineAt ? { deadlineAt: r.deadlineAt } : {}),
    ...identityFromProto(r),
  };
}

export function runSummaryFromProto(r: pb.Run): RunSummary {
  const c = r.nodeCounts;
  return {
    id: r.id,
    createdAt: r.createdAt,
    status: RUN_STATUS_BACK.get(r.status) ?? 'WAITING',
    conclusion: RUN_CONCLUSION_BACK.get(r.conclusion),
    finishedAt: r.finishedAt || undefined,
    nodeCounts: {
      WAITING: Number(c?.waiting ?? 0),
      READY: Number(c?.ready ?? 0),
      RUNNING: Number(c?.running ?? 0),
      COMPLETED: Number(c?.completed ?? 0),
    },
    failedNodes: [...r.failedNodes],
    failedNodeCount: Number(r.failedNodeCount),
    ...identityFromProto(r),
  };
}

export function agentToProto(a: AgentInfo): pb.Agent {
  return create(pb.AgentSchema, {
    id: a.id,
    runtimes: a.runtimes.map((r) => create(pb.RuntimeSchema, r)),
    startedAt: a.startedAt,
    hostname: a.hostname,
  });
}

export function agentFromProto(a: pb.Agent): AgentInfo {
  return {
    id: a.id,
    runtimes: a.runtimes.map((r) => ({ name: r.name })),
    startedAt: a.startedAt,
    hostname: a.hostname,
  };
}

export function statsToProto(s: Stats): pb.Stats {
  return create(pb.StatsSchema, {
    runCount: BigInt(s.runCount),
    waitingNodes: BigInt(s.nodeCounts.WAITING),
    readyNodes: BigInt(s.nodeCounts.READY),
    runningNodes: BigInt(s.nodeCounts.RUNNING),
    completedNodes: BigInt(s.nodeCounts.COMPLETED),
  });
}

export function statsFromProto(s: pb.Stats): Stats {
  return {
    runCount: Number(s.runCount),
    nodeCounts: {
      WAITING: Number(s.waitingNodes),
      READY: Number(s.readyNodes),
      RUNNING: Number(s.runningNodes),
      COMPLETED: Number(s.completedNodes),
    },
  };
}

/** The identity fields of a wire Run (empty ones as the proto's zero values). */
export function identityToProto(
  r: RunIdentity,
): Pick<pb.Run, 'name' | 'labels' | 'workflow' | 'workflowVersion' | 'params' | 'requestId'> {
  return {
    name: r.name ?? '',
    labels: { ...r.labels },
    workflow: r.workflow ?? '',
    workflowVersion: r.workflowVersion ?? 0,
    params: { ...r.params },
    requestId: r.requestId ?? '',
  };
}

/** The identity of a wire Run, zero values left out. */
export function identityFromProto(r: pb.Run): RunIdentity {
  const out: RunIdentity = {};
  if (r.name) out.name = r.name;
  if (Object.keys(r.labels).length > 0) out.labels = { ...r.labels };
  if (r.workflow) out.workflow = r.workflow;
  if (r.workflowVersion) out.workflowVersion = r.workflowVersion;
  if (Object.keys(r.params).length > 0) out.params = { ...r.params };
  if (r.requestId) out.requestId = r.requestId;
  return out;
}
