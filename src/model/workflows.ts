import { createHash } from 'node:crypto';
import { InvalidArgumentError, InvalidGraphError } from '../protocol/errors.js';
import { LIMITS } from './limits.js';
import { normalizeNodeSpec } from './rules.js';
import type { GraphSpec, Labels, NodeSpec, Params, RunConclusion, RunIdentity, RunStatus } from './types.js';

export type { Labels, Params, RunIdentity } from './types.js';

import { textProblem, utf8Bytes, validateGraph } from './validate.js';

/**
 * Workflow definitions, run parameters and run identity (docs/design.md rules
 * 16 and 17): the types, and every check and decision about them as pure
 * functions, so every backend refuses and substitutes alike.
 */

/** A parameter a workflow declares. A param is required, or optional with a default (empty when absent). */
export interface ParamSpec {
  name: string;
  required?: boolean;
  default?: string;
  description?: string;
}

/** What a caller puts: the body of `PUT /v0/workflows/{name}`. */
export interface WorkflowInput {
  spec: GraphSpec;
  description?: string;
  params?: ParamSpec[];
}

/** One immutable version of a named workflow. */
export interface WorkflowDefinition {
  name: string;
  /** 1, 2, … per name; a put with the latest version's content returns it instead of a new one. */
  version: number;
  spec: GraphSpec;
  description: string;
  params: ParamSpec[];
  /** RFC 3339 of when this version was stored. */
  createdAt: string;
}

/** What a list of workflows shows: each name's latest version, without its graph. */
export interface WorkflowSummary {
  name: string;
  latestVersion: number;
  description: string;
  params: ParamSpec[];
  /** RFC 3339 of the latest version. */
  createdAt: string;
}

export const WORKFLOW_LIMITS = {
  /** Workflow, param and label names; run names too. */
  maxNameLength: 128,
  maxDescriptionLength: 4096,
  maxParams: 64,
  /** One param's value (default or given), UTF-8 bytes. */
  maxParamValueBytes: 8 * 1024,
  /**
   * A run's params together, as stored (JSON, UTF-8 bytes): a run's identity
   * is one item or value (DynamoDB's header item holds 400 KB; etcd reads a
   * hundred runs' identities in one answer), and JSON escapes a control
   * character as six bytes.
   */
  maxParamsBytes: 64 * 1024,
  /**
   * A stored workflow version (spec, description, params) as stored (JSON,
   * UTF-8 bytes): one DynamoDB item (400 KB) and one etcd request. A graph
   * larger than this is started as a graph.
   */
  maxDefinitionBytes: 256 * 1024,
  maxLabels: 32,
  maxLabelValueLength: 256,
  /** A run search's text. */
  maxSearchLength: 256,
} as const;

/** Names of workflows, params and label keys: start with a letter or digit, then letters, digits, `_ . - /`. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-/]*$/;
/** A param reference in a metadata value: `{{params.NAME}}`, spaces inside the braces allowed. */
const PARAM_REF = /\{\{\s*params\.([^\s}]*)\s*\}\}/g;

function nameProblem(what: string, name: unknown): string | undefined {
  if (typeof name !== 'string' || name === '') return `${what} is required`;
  if (name.length > WORKFLOW_LIMITS.maxNameLength)
    return `${what} ${JSON.stringify(name.slice(0, 40))}… is longer than ${WORKFLOW_LIMITS.maxNameLength} characters`;
  if (!NAME.test(name))
    return `${what} ${JSON.stringify(name)} must start with a letter or digit and hold only letters, digits, "_", ".", "-" and "/"`;
  return undefined;
}

/** A workflow name a caller sent (put, get, delete, start). */
export function checkWorkflowName(name: string): void {
  const problem = nameProblem('workflow name', name);
  if (problem) throw new InvalidArgumentError(problem);
}

/** A version a caller asked for: a whole number from 1. */
export function checkWorkflowVersion(version: number | undefined): void {
  if (version === undefined) return;
  if (!Number.isSafeInteger(version) || version < 1)
    throw new InvalidArgumentError(
      `workflow version must be a whole number from 1, got ${JSON.stringify(version)}`,
    );
}

/** Every `{{params.NAME}}` the graph's metadata values refer to, in order of first use. */
export function paramReferences(spec: GraphSpec): string[] {
  const seen = new Set<string>();
  for (const node of spec.nodes)
    for (const values of Object.values(node.metadata ?? {}))
      for (const v of values) for (const m of v.matchAll(PARAM_REF)) seen.add(m[1]!);
  return [...seen];
}

/**
 * Rule 16: the problems of a workflow put, each a sentence naming what is
 * wrong (empty when it may be stored): its name, description, declared params
 * (valid unique names; required, or optional with a default; not both), the
 * graph (rule 1), and every `{{params.X}}` the graph uses must be declared.
 */
export function validateWorkflow(name: string, input: WorkflowInput): string[] {
  const problems: string[] = [];
  const n = nameProblem('workflow name', name);
  if (n) problems.push(n);
  if (input === null || typeof input !== 'object')
    return [...problems, 'workflow must be an object with a spec'];
  const description = input.description ?? '';
  if (typeof description !== 'string') problems.push('description must be text');
  else {
    if (description.length > WORKFLOW_LIMITS.maxDescriptionLength)
      problems.push(`description is longer than ${WORKFLOW_LIMITS.maxDescriptionLength} characters`);
    const t = textProblem(description);
    if (t) problems.push(`description ${t}`);
  }
  const params = input.params ?? [];
  if (!Array.isArray(params)) problems.push('params must be a list');
  else {
    if (params.length > WORKFLOW_LIMITS.maxParams)
      problems.push(`workflow declares ${params.length} params; the limit is ${WORKFLOW_LIMITS.maxParams}`);
    const names = new Set<string>();
    params.forEach((p, i) => {
      const pn = nameProblem(`param #${i + 1} name`, p?.name);
      if (pn) {
        problems.push(pn);
        return;
      }
      if (names.has(p.name)) problems.push(`param "${p.name}" is declared twice`);
      names.add(p.name);
      if (p.required !== undefined && typeof p.required !== 'boolean')
        problems.push(`param "${p.name}": required must be true or false`);
      if (p.default !== undefined) {
        const vp = valueProblem(`param "${p.name}" default`, p.default);
        if (vp) problems.push(vp);
        if (p.required) problems.push(`param "${p.name}" is required and has a default: choose one`);
      }
      if (p.description !== undefined) {
        if (typeof p.description !== 'string') problems.push(`param "${p.name}": description must be text`);
        else if (p.description.length > WORKFLOW_LIMITS.maxDescriptionLength)
          problems.push(
            `param "${p.name}": description is longer than ${WORKFLOW_LIMITS.maxDescriptionLength} characters`,
          );
        else if (textProblem(p.description))
          problems.push(`param "${p.name}": description ${textProblem(p.description)}`);
      }
    });
    if (input.spec && Array.isArray(input.spec.nodes))
      for (const ref of paramReferences(input.spec))
        if (!names.has(ref))
          problems.push(`the graph uses {{params.${ref}}}, but the workflow declares no param "${ref}"`);
  }
  if (!input.spec || !Array.isArray(input.spec.nodes) || !Array.isArray(input.spec.edges))
    problems.push('workflow spec must be a graph with nodes and edges');
  else problems.push(...validateGraph(input.spec));
  if (problems.length === 0) {
    const bytes = utf8Bytes(JSON.stringify(normalizeWorkflow(input)));
    if (bytes > WORKFLOW_LIMITS.maxDefinitionBytes)
      problems.push(
        `workflow is ${bytes} bytes as stored (JSON); the limit is ${WORKFLOW_LIMITS.maxDefinitionBytes}: start a graph this big as a graph`,
      );
  }
  return problems;
}

/** A workflow put must pass validateWorkflow; InvalidGraphError lists every problem. */
export function checkWorkflow(name: string, input: WorkflowInput): void {
  const problems = validateWorkflow(name, input);
  if (problems.length > 0) throw new InvalidGraphError(problems);
}

function valueProblem(what: string, value: unknown): string | undefined {
  if (typeof value !== 'string') return `${what} must be text`;
  const bytes = utf8Bytes(value);
  if (bytes > WORKFLOW_LIMITS.maxParamValueBytes)
    return `${what} is ${bytes} bytes; the limit is ${WORKFLOW_LIMITS.maxParamValueBytes}`;
  const t = textProblem(value);
  return t ? `${what} ${t}` : undefined;
}

/** The stored form of a put: only the protocol's fields, absent parts as empty, so equal content compares equal. */
export function normalizeWorkflow(
  input: WorkflowInput,
): Omit<WorkflowDefinition, 'name' | 'version' | 'createdAt'> {
  return {
    spec: {
      nodes: input.spec.nodes.map(normalizeNodeSpec),
      edges: input.spec.edges.map((e) => ({ source: e.source, destination: e.destination })),
      // Rule 13: the graph's deadline is part of what a start of it runs (it was dropped here, so no run of a
      // stored workflow had one).
      ...(input.spec.deadline ? { deadline: input.spec.deadline } : {}),
    },
    description: input.description ?? '',
    params: (input.params ?? []).map((p) => ({
      name: p.name,
      ...(p.required ? { required: true } : {}),
      // An empty default is no default (either gives the param "" at start, and the wire cannot tell them apart).
      ...(p.default ? { default: p.default } : {}),
      ...(p.description ? { description: p.description } : {}),
    })),
  };
}

/** JSON with object keys sorted: the same content always gives the same text. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** A name's latest version as a store keeps it: its number, content hash and list summary. */
export interface WorkflowHead {
  v: number;
  h: string;
  summary: WorkflowSummary;
}

/**
 * Rule 16's put, decided from the stored head (the store compares that head
 * when it writes): the latest version when its content hash is the same
 * (`same`), else version n+1 and the head that replaces it.
 */
export function planWorkflowPut(
  name: string,
  content: Omit<WorkflowDefinition, 'name' | 'version' | 'createdAt'>,
  hash: string,
  /** The latest version and its content hash (a store without head records passes just these). */
  head: Pick<WorkflowHead, 'v' | 'h'> | undefined,
  createdAt: string,
): { same: number } | { def: WorkflowDefinition; head: WorkflowHead } {
  if (head?.h === hash) return { same: head.v };
  const def: WorkflowDefinition = { name, version: (head?.v ?? 0) + 1, ...content, createdAt };
  const summary: WorkflowSummary = {
    name,
    latestVersion: def.version,
    description: def.description,
    params: def.params,
    createdAt: def.createdAt,
  };
  return { def, head: { v: def.version, h: hash, summary } };
}

/**
 * The content hash of a normalized workflow (graph, description, params):
 * what "the same content again" compares. Metadata key order and absent
 * versus empty fields do not change it.
 */
export function workflowContentHash(w: Omit<WorkflowDefinition, 'name' | 'version' | 'createdAt'>): string {
  return createHash('sha256')
    .update(canonicalJson({ spec: w.spec, description: w.description, params: w.params }))
    .digest('hex');
}

/**
 * Rule 16 at start: the params a run gets from the ones given. Refuses a given
 * param the workflow does not declare and a required one not given, naming
 * them; fills the others' defaults (empty when none).
 */
export function resolveParams(declared: readonly ParamSpec[], given: Params = {}): Params {
  if (given === null || typeof given !== 'object' || Array.isArray(given))
    throw new InvalidArgumentError('params must be an object of name → text');
  const known = new Set(declared.map((p) => p.name));
  const unknown = Object.keys(given).filter((k) => !known.has(k));
  if (unknown.length > 0)
    throw new InvalidArgumentError(
      `unknown param${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}: the workflow declares ${declared.length ? declared.map((p) => JSON.stringify(p.name)).join(', ') : 'no params'}`,
    );
  const out: Params = {};
  const missing: string[] = [];
  for (const p of declared) {
    const v = Object.hasOwn(given, p.name) ? given[p.name] : undefined;
    if (v === undefined) {
      if (p.required) missing.push(p.name);
      else out[p.name] = p.default ?? '';
      continue;
    }
    const problem = valueProblem(`param "${p.name}"`, v);
    if (problem) throw new InvalidArgumentError(problem);
    out[p.name] = v;
  }
  if (missing.length > 0)
    throw new InvalidArgumentError(
      `missing required param${missing.length > 1 ? 's' : ''} ${missing.map((k) => JSON.stringify(k)).join(', ')}`,
    );
  const bytes = utf8Bytes(JSON.stringify(out));
  if (bytes > WORKFLOW_LIMITS.maxParamsBytes)
    throw new InvalidArgumentError(
      `params are ${bytes} bytes as stored (JSON); the limit is ${WORKFLOW_LIMITS.maxParamsBytes} together`,
    );
  return out;
}

/** The graph with every `{{params.X}}` in metadata values replaced by the run's value of X (all declared: see validateWorkflow). */
export function substituteParams(spec: GraphSpec, params: Params): GraphSpec {
  const sub = (v: string) =>
    v.replace(PARAM_REF, (whole, name: string) => (Object.hasOwn(params, name) ? params[name]! : whole));
  // The graph's own fields (its deadline, rule 13) go with it: only node metadata takes params.
  return {
    ...spec,
    nodes: spec.nodes.map(
      (n): NodeSpec => ({
        ...n,
        metadata: Object.fromEntries(Object.entries(n.metadata).map(([k, vs]) => [k, vs.map(sub)])),
      }),
    ),
  };
}

// ---- run identity and run lists

/** A run's labels: at most WORKFLOW_LIMITS.maxLabels, keys named like params, values storable text. */
export function checkLabels(labels: Labels | undefined): void {
  if (labels === undefined) return;
  if (labels === null || typeof labels !== 'object' || Array.isArray(labels))
    throw new InvalidArgumentError('labels must be an object of key → text');
  const keys = Object.keys(labels);
  if (keys.length > WORKFLOW_LIMITS.maxLabels)
    throw new InvalidArgumentError(
      `a run has ${keys.length} labels; the limit is ${WORKFLOW_LIMITS.maxLabels}`,
    );
  for (const k of keys) {
    const kp = nameProblem('label key', k);
    if (kp) throw new InvalidArgumentError(kp);
    const v = labels[k];
    if (typeof v !== 'string') throw new InvalidArgumentError(`label "${k}" must be text`);
    if (v.length > WORKFLOW_LIMITS.maxLabelValueLength)
      throw new InvalidArgumentError(
        `label "${k}" is longer than ${WORKFLOW_LIMITS.maxLabelValueLength} characters`,
      );
    const t = textProblem(v);
    if (t) throw new InvalidArgumentError(`label "${k}" ${t}`);
  }
}

/** A run's name: storable text within the name limit (any characters: it is for people). */
export function checkRunName(name: string | undefined): void {
  if (name === undefined || name === '') return;
  if (typeof name !== 'string') throw new InvalidArgumentError('run name must be text');
  if (name.length > WORKFLOW_LIMITS.maxNameLength)
    throw new InvalidArgumentError(`run name is longer than ${WORKFLOW_LIMITS.maxNameLength} characters`);
  const t = textProblem(name);
  if (t) throw new InvalidArgumentError(`run name ${t}`);
}

/** A start's request id: an id like any other a caller sends. */
export function checkRequestId(id: string | undefined): void {
  if (id === undefined) return;
  if (typeof id !== 'string' || id === '') throw new InvalidArgumentError('request id must not be empty');
  const t = textProblem(id);
  if (t) throw new InvalidArgumentError(`request id ${t}`);
  if (Buffer.byteLength(id) > LIMITS.maxIdBytes)
    throw new InvalidArgumentError(`request id is longer than ${LIMITS.maxIdBytes} bytes`);
}

/** Filters of a run list, beyond its window and paging (rule 17). */
export interface RunFilter {
  workflow?: string;
  /** Every label given must be on the run with that value. */
  labels?: Labels;
  status?: RunStatus;
  conclusion?: RunConclusion;
  /** A run id prefix, or text in the run's name (case-insensitive). */
  search?: string;
}

const STATUSES: readonly string[] = ['WAITING', 'RUNNING', 'COMPLETED'];
const CONCLUSIONS: readonly string[] = ['SUCCESS', 'FAIL', 'CANCELLED', 'TIMED_OUT'];

/** A list's filters, checked once for every backend. */
export function checkRunFilter(f: RunFilter): void {
  if (f.workflow !== undefined) checkWorkflowName(f.workflow);
  if (f.labels !== undefined) checkLabels(f.labels);
  if (f.status !== undefined && !STATUSES.includes(f.status))
    throw new InvalidArgumentError(
      `status must be one of ${STATUSES.join(', ')}, got ${JSON.stringify(f.status)}`,
    );
  if (f.conclusion !== undefined && !CONCLUSIONS.includes(f.conclusion))
    throw new InvalidArgumentError(
      `conclusion must be one of ${CONCLUSIONS.join(', ')}, got ${JSON.stringify(f.conclusion)}`,
    );
  if (f.search !== undefined) {
    if (typeof f.search !== 'string') throw new InvalidArgumentError('search must be text');
    if (f.search.length > WORKFLOW_LIMITS.maxSearchLength)
      throw new InvalidArgumentError(`search is longer than ${WORKFLOW_LIMITS.maxSearchLength} characters`);
    const t = textProblem(f.search);
    if (t) throw new InvalidArgumentError(`search ${t}`);
  }
}

/** Whether the filter has anything to filter by. */
export function filtering(f: RunFilter): boolean {
  return (
    f.workflow !== undefined ||
    (f.labels !== undefined && Object.keys(f.labels).length > 0) ||
    f.status !== undefined ||
    f.conclusion !== undefined ||
    (f.search !== undefined && f.search !== '')
  );
}

/** The identity part of the filter (what a stored run record answers without its nodes). */
export function identityMatches(
  run: { id: string; name?: string; labels?: Labels; workflow?: string },
  f: RunFilter,
): boolean {
  if (f.workflow !== undefined && run.workflow !== f.workflow) return false;
  if (f.labels) for (const [k, v] of Object.entries(f.labels)) if (run.labels?.[k] !== v) return false;
  if (f.search) {
    const q = f.search.toLowerCase();
    if (!run.id.toLowerCase().startsWith(q) && !(run.name ?? '').toLowerCase().includes(q)) return false;
  }
  return true;
}

/** Rule 17: whether a listed run passes the filter. */
export function runMatches(
  run: {
    id: string;
    name?: string;
    labels?: Labels;
    workflow?: string;
    status: RunStatus;
    conclusion?: RunConclusion;
  },
  f: RunFilter,
): boolean {
  if (f.status !== undefined && run.status !== f.status) return false;
  if (f.conclusion !== undefined && run.conclusion !== f.conclusion) return false;
  return identityMatches(run, f);
}

/** A start's request as the protocol takes it (StartOptions in src/protocol/repository.ts). */
export interface StartRequestOptions {
  workflow?: string;
  version?: number;
  params?: Params;
  name?: string;
  labels?: Labels;
  requestId?: string;
}

/** The checks of a start's options that need no stored workflow, run before any read. */
export function checkStartOptions(spec: GraphSpec | undefined, o: StartRequestOptions): void {
  if (o.workflow !== undefined) {
    checkWorkflowName(o.workflow);
    checkWorkflowVersion(o.version);
    if (spec !== undefined)
      throw new InvalidArgumentError('a start names a workflow or sends a graph spec, not both');
  } else {
    if (spec === undefined) throw new InvalidArgumentError('a start needs a graph spec or a workflow name');
    if (o.version !== undefined) throw new InvalidArgumentError('a version needs a workflow name');
    if (o.params !== undefined && Object.keys(o.params).length > 0)
      throw new InvalidArgumentError('params need a workflow name: a graph start has no declared params');
  }
  checkRunName(o.name);
  checkLabels(o.labels);
  checkRequestId(o.requestId);
}

/**
 * Rules 16 and 17: what a start creates, from the graph or the workflow
 * definition it names (read by the backend): the graph with params
 * substituted, checked by rule 1, and the run's identity.
 */
export function planStart(
  spec: GraphSpec | undefined,
  o: StartRequestOptions,
  definition?: WorkflowDefinition,
): { spec: GraphSpec; identity: RunIdentity } {
  checkStartOptions(spec, o);
  let graph: GraphSpec;
  const identity: RunIdentity = {};
  if (definition) {
    const params = resolveParams(definition.params, o.params);
    graph = substituteParams(definition.spec, params);
    identity.workflow = definition.name;
    identity.workflowVersion = definition.version;
    identity.params = params;
  } else graph = spec!;
  const problems = validateGraph(graph);
  if (problems.length > 0) throw new InvalidGraphError(problems);
  const name = o.name || definition?.name;
  if (name) identity.name = name;
  if (o.labels && Object.keys(o.labels).length > 0) identity.labels = { ...o.labels };
  if (o.requestId !== undefined) identity.requestId = o.requestId;
  return { spec: graph, identity };
}
