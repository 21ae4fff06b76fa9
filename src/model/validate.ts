import { parseDuration } from './duration.js';
import { LIMITS } from './limits.js';
import { type Backoff, type GraphSpec, type NodeSpec, RETRY_CONCLUSIONS, TRIGGER_RULES } from './types.js';

/** Metadata `adagio.inputs.<runtime>.<argument>` = the upstream node whose output feeds that argument. */
export const INPUTS_PREFIX = 'adagio.inputs.';

/** NUL, or half of a surrogate pair: text no store keeps as text (PostgreSQL's jsonb and text refuse it). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding NUL is the point.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `s` cannot be stored as text, or undefined when it can. */
export function textProblem(s: string): string | undefined {
  // Every claim and finish checks its ids: a scan finding no NUL and no surrogate
  // at all (the common case) is several times cheaper than the regex's lookarounds.
  let i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || (c >= 0xd800 && c <= 0xdfff)) break;
  }
  if (i === s.length) return undefined;
  const m = UNSTORABLE.exec(s);
  if (!m) return undefined;
  return m[0] === '\u0000'
    ? 'contains a NUL character (U+0000)'
    : 'contains an unpaired surrogate (not valid Unicode)';
}

/**
 * Names a plain JavaScript object cannot hold as its own key: assigning
 * `o["__proto__"]` sets the prototype and the entry vanishes. Refused as node
 * names, metadata keys and retry keys so they are never silently dropped.
 */
export const RESERVED_KEYS: readonly string[] = ['__proto__'];

export function reservedKeyProblem(key: string): string | undefined {
  return RESERVED_KEYS.includes(key) ? `${JSON.stringify(key)} is a reserved name` : undefined;
}

/** Length of `s` in UTF-8 bytes, without encoding it. */
export function utf8Bytes(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** The first metadata key or value that cannot be stored as text, as a sentence naming it; undefined when all can. */
/**
 * Metadata past LIMITS.maxNodeMetadataBytes (keys and values, UTF-8): a
 * node's, a claim's or an attempt's. A store holds it with the node's record
 * (etcd refuses a request over 1.5 MiB for good), so the limit is one rule.
 */
export function metadataSizeProblem(metadata: Record<string, string[]>): string | undefined {
  let bytes = 0;
  for (const [key, values] of Object.entries(metadata)) {
    bytes += utf8Bytes(key);
    for (const v of values) bytes += utf8Bytes(v);
  }
  return bytes > LIMITS.maxNodeMetadataBytes
    ? `metadata is ${bytes} bytes (UTF-8); the limit is ${LIMITS.maxNodeMetadataBytes}`
    : undefined;
}

export function metadataProblem(metadata: Record<string, string[]>): string | undefined {
  for (const [key, values] of Object.entries(metadata)) {
    const reserved = reservedKeyProblem(key);
    if (reserved) return `metadata key ${reserved}`;
    const k = textProblem(key);
    if (k) return `metadata key ${JSON.stringify(key)} ${k}`;
    for (const v of values) {
      const p = textProblem(v);
      if (p) return `metadata "${key}" ${p}`;
    }
  }
  return undefined;
}

/**
 * Checks a graph against protocol rule 1. Returns the problems found, each a
 * sentence naming what is wrong; an empty list means the graph is valid.
 * Pure: callers decide how to report (the protocol throws InvalidGraphError).
 */
export function validateGraph(spec: GraphSpec): string[] {
  const problems: string[] = [];
  if (spec.nodes.length === 0) problems.push('graph has no nodes');
  if (spec.nodes.length > LIMITS.maxNodes) {
    problems.push(`graph has ${spec.nodes.length} nodes; the limit is ${LIMITS.maxNodes}`);
    return problems;
  }
  if (spec.edges.length > LIMITS.maxEdges) {
    problems.push(`graph has ${spec.edges.length} edges; the limit is ${LIMITS.maxEdges}`);
    return problems;
  }

  const names = new Set<string>();
  spec.nodes.forEach((node, i) => {
    const where = node.name ? `node "${node.name}"` : `node #${i + 1}`;
    if (!node.name) problems.push(`node #${i + 1} has an empty name`);
    else if (node.name.length > LIMITS.maxNameLength)
      problems.push(`${where.slice(0, 40)}…: name longer than ${LIMITS.maxNameLength} characters`);
    else if (names.has(node.name)) problems.push(`duplicate node name "${node.name}"`);
    names.add(node.name);
    const nameProblem = node.name ? (textProblem(node.name) ?? reservedKeyProblem(node.name)) : undefined;
    if (nameProblem) problems.push(`node #${i + 1}: name ${nameProblem}`);
    const runtimeProblem = node.runtime ? textProblem(node.runtime) : undefined;
    if (runtimeProblem) problems.push(`${where}: runtime ${runtimeProblem}`);
    const mdProblem = metadataProblem(node.metadata);
    if (mdProblem) problems.push(`${where}: ${mdProblem}`);
    if (!node.runtime) problems.push(`${where} has an empty runtime`);
    else if (node.runtime.length > LIMITS.maxNameLength)
      problems.push(`${where}: runtime name longer than ${LIMITS.maxNameLength} characters`);
    const sizeProblem = metadataSizeProblem(node.metadata);
    if (sizeProblem) problems.push(`${where}: ${sizeProblem}`);
    if (node.trigger !== undefined && !TRIGGER_RULES.includes(node.trigger))
      problems.push(
        `${where}: trigger ${JSON.stringify(node.trigger)} is not one of ${TRIGGER_RULES.join(', ')}`,
      );
    for (const [conclusion, retry] of Object.entries(node.retry)) {
      if (!RETRY_CONCLUSIONS.includes(conclusion as never))
        problems.push(`${where}: retry key "${conclusion}" is not one of ${RETRY_CONCLUSIONS.join(', ')}`);
      else if (!retry || !Number.isInteger(retry.maxAttempts) || retry.maxAttempts < 0)
        problems.push(`${where}: retry.${conclusion}.max_attempts must be a whole number >= 0`);
      else if (retry.maxAttempts > LIMITS.maxAttempts)
        problems.push(
          `${where}: retry.${conclusion}.max_attempts is over the limit of ${LIMITS.maxAttempts}`,
        );
    }
    problems.push(...timingProblems(where, node));
  });
  if (spec.deadline !== undefined) {
    const p = durationProblem(spec.deadline, true);
    if (p) problems.push(`graph deadline ${p}`);
  }

  const seenEdges = new Set<string>();
  for (const edge of spec.edges) {
    const label = `edge ${edge.source} -> ${edge.destination}`;
    if (!names.has(edge.source)) problems.push(`${label}: unknown source node "${edge.source}"`);
    if (!names.has(edge.destination))
      problems.push(`${label}: unknown destination node "${edge.destination}"`);
    if (edge.source === edge.destination) problems.push(`${label}: a node cannot depend on itself`);
    const key = `${edge.source}\u0000${edge.destination}`;
    if (seenEdges.has(key)) problems.push(`duplicate ${label}`);
    seenEdges.add(key);
  }
  const upstream = new Map<string, Set<string>>();
  for (const e of spec.edges) {
    if (!upstream.has(e.destination)) upstream.set(e.destination, new Set());
    upstream.get(e.destination)!.add(e.source);
  }
  for (const node of spec.nodes)
    for (const [key, values] of Object.entries(node.metadata)) {
      if (!key.startsWith(INPUTS_PREFIX)) continue;
      for (const from of values)
        if (!upstream.get(node.name)?.has(from))
          problems.push(
            `node "${node.name}": ${key} names "${from}", which is not a direct upstream node (an input is an edge's output: add the edge ${from} -> ${node.name})`,
          );
    }
  if (problems.length === 0) {
    const cycle = findCycle(spec);
    if (cycle) problems.push(`graph has a cycle: ${cycle.join(' -> ')}`);
  }
  return problems;
}

/** One cycle's nodes in order (first repeated at the end), or undefined for a DAG. Iterative: deep graphs must not overflow the stack. */
export function findCycle(spec: GraphSpec): string[] | undefined {
  const out = new Map<string, string[]>();
  for (const n of spec.nodes) out.set(n.name, []);
  for (const e of spec.edges) out.get(e.source)?.push(e.destination);
  const state = new Map<string, 1 | 2>(); // 1 on the stack, 2 done
  for (const root of out.keys()) {
    if (state.has(root)) continue;
    const stack: { name: string; next: number }[] = [{ name: root, next: 0 }];
    state.set(root, 1);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const children = out.get(top.name)!;
      if (top.next < children.length) {
        const child = children[top.next++]!;
        const s = state.get(child);
        if (s === 1) {
          const from = stack.findIndex((f) => f.name === child);
          return [...stack.slice(from).map((f) => f.name), child];
        }
        if (s === undefined) {
          state.set(child, 1);
          stack.push({ name: child, next: 0 });
        }
      } else {
        state.set(top.name, 2);
        stack.pop();
      }
    }
  }
  return undefined;
}

/**
 * Why `text` is not a usable duration, or undefined when it is: unparsable,
 * negative (refused by the grammar), or zero where a limit must be positive.
 */
function durationProblem(text: unknown, positive: boolean): string | undefined {
  if (typeof text !== 'string') return `must be a duration string like "30s", got ${JSON.stringify(text)}`;
  let ms: number;
  try {
    ms = parseDuration(text);
  } catch (e) {
    return (e as Error).message;
  }
  if (positive && ms <= 0) return `must be longer than 0, got ${JSON.stringify(text)}`;
  return undefined;
}

/** A node's retry backoffs and timeout (rules 5 and 11): every bad value, named. */
function timingProblems(where: string, node: NodeSpec): string[] {
  const problems: string[] = [];
  for (const [conclusion, retry] of Object.entries(node.retry)) {
    const b: Backoff | undefined = retry?.backoff;
    if (!b) continue;
    const at = `${where}: retry.${conclusion}.backoff`;
    const initial = durationProblem(b.initial, false);
    if (initial) problems.push(`${at}.initial ${initial}`);
    const max = b.max === undefined ? undefined : durationProblem(b.max, false);
    if (max) problems.push(`${at}.max ${max}`);
    if (b.factor !== undefined && !(Number.isFinite(b.factor) && b.factor >= 1))
      problems.push(`${at}.factor must be 1 or more, got ${b.factor}`);
    if (b.jitter !== undefined && !(Number.isFinite(b.jitter) && b.jitter >= 0 && b.jitter <= 1))
      problems.push(`${at}.jitter must be from 0 to 1, got ${b.jitter}`);
    if (!initial && b.max !== undefined && !max && parseDuration(b.max) < parseDuration(b.initial))
      problems.push(
        `${at}.max ${JSON.stringify(b.max)} is shorter than initial ${JSON.stringify(b.initial)}`,
      );
  }
  if (node.timeout !== undefined) {
    const p = durationProblem(node.timeout, true);
    if (p) problems.push(`${where}: timeout ${p}`);
  }
  return problems;
}
