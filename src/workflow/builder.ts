import type { JsonValue } from '@bufbuild/protobuf';
import type { Backoff, Edge, GraphSpec, Metadata, NodeSpec, RetrySpec, TriggerRule } from '../model/types.js';
import { validateGraph } from '../model/validate.js';
import { graphToJson } from '../model/wire.js';
import { checkWorkflow, type ParamSpec, type WorkflowInput } from '../model/workflows.js';
import { InvalidArgumentError, InvalidGraphError } from '../protocol/errors.js';
import {
  ARGUMENTS_PREFIX,
  type ArgSpecs,
  argumentKey,
  givesValue,
  INPUTS_PREFIX,
  inputKey,
  LEGACY_ARGUMENTS_PREFIX,
  legacyArgumentKey,
} from '../runtimes/args.js';
import type { Task } from '../runtimes/task.js';

/**
 * A fluent, typed way to write a graph spec in TypeScript:
 *
 *   const wf = workflow();
 *   const fetch = wf
 *     .node('fetch', exec({ command: 'curl', args: ['-s', url] }))
 *     .retry({ fail: 3, backoff: { initial: '1s', factor: 2, max: '1m' } })
 *     .timeout('30s');
 *   const count = wf.node('count', exec({ command: 'wc', args: ['-c'] })).argFrom('stdin', fetch);
 *   const spec = wf.deadline('10m').build();
 *
 * `build` checks the graph with the same rules as the store (plus arguments a
 * typed runtime requires) and throws InvalidGraphError listing every problem.
 */
export function workflow(): Workflow {
  return new Workflow();
}

/** Argument names `argFrom` accepts: the declared ones for a typed runtime, any for a loose one. */
export type ArgName<A extends ArgSpecs> = string extends keyof A ? string : keyof A & string;

type NodeRef = NodeBuilder<ArgSpecs> | string;

/**
 * A declared param: interpolating it in a string (`${date}`) writes the
 * reference `{{params.date}}`, which a run replaces with its value (rule 16).
 */
export class Param {
  constructor(readonly spec: ParamSpec) {}
  get name(): string {
    return this.spec.name;
  }
  /** The reference a metadata value carries. */
  get ref(): string {
    return `{{params.${this.spec.name}}}`;
  }
  toString(): string {
    return this.ref;
  }
}

/** A workflow file's content: the body of PUT /v0/workflows/{name} with its name. */
export interface WorkflowFile extends WorkflowInput {
  name: string;
}

export class Workflow {
  private readonly nodes: NodeBuilder<ArgSpecs>[] = [];
  private readonly edges: Edge[] = [];
  private readonly edgeKeys = new Set<string>();
  private deadlineText?: string;

  /** How long a run of this graph may take (rule 13), e.g. `'2h'`: past it the run is cancelled, TIMED_OUT. */
  deadline(duration: string): this {
    this.deadlineText = duration;
    return this;
  }
  private readonly params: ParamSpec[] = [];
  private description = '';

  /**
   * Declares a param; use the result inside argument strings. Required
   * unless it has a default (`{ default: 'staging' }`).
   */
  param(name: string, options: { default?: string; description?: string } = {}): Param {
    const spec: ParamSpec = {
      name,
      ...(options.default === undefined ? { required: true } : { default: options.default }),
      ...(options.description ? { description: options.description } : {}),
    };
    this.params.push(spec);
    return new Param(spec);
  }

  /** What the workflow does, shown by `adagio workflows show` and the UI. */
  describe(text: string): this {
    this.description = text;
    return this;
  }

  /**
   * The workflow definition to store under `name` (AdagioClient.putWorkflow,
   * or as a file for `adagio workflows put`); InvalidGraphError listing every
   * problem, an undeclared param included, when it would be refused.
   */
  definition(name: string): WorkflowFile {
    const input: WorkflowInput = {
      spec: this.buildGraph(),
      description: this.description,
      params: this.params.map((p) => ({ ...p })),
    };
    checkWorkflow(name, input);
    return { name, ...input };
  }

  /** The definition in its JSON file form (the graph in canonical JSON). */
  definitionJson(name: string): JsonValue {
    const d = this.definition(name);
    return {
      name: d.name,
      description: d.description ?? '',
      params: (d.params ?? []) as unknown as JsonValue,
      spec: graphToJson(d.spec),
    };
  }

  /** Adds a node running `task`; chain `dependsOn`, `retry`, `argFrom`, `meta` on the result. */
  node<A extends ArgSpecs>(name: string, task: Task<A>): NodeBuilder<A> {
    const builder = new NodeBuilder<A>(this, name, task);
    this.nodes.push(builder as unknown as NodeBuilder<ArgSpecs>);
    return builder;
  }

  /** @internal used by NodeBuilder; an edge given twice is kept once. */
  addEdge(source: string, destination: string): void {
    const key = `${source}\u0000${destination}`;
    if (this.edgeKeys.has(key)) return;
    this.edgeKeys.add(key);
    this.edges.push({ source, destination });
  }

  /**
   * The graph spec; InvalidGraphError listing every problem when it would be
   * refused. A graph that uses params is a workflow: see `definition`.
   */
  build(): GraphSpec {
    if (this.params.length > 0)
      throw new InvalidGraphError([
        `the graph declares params (${this.params.map((p) => p.name).join(', ')}): store it with definition(name) and start the workflow`,
      ]);
    return this.buildGraph();
  }

  private buildGraph(): GraphSpec {
    const spec: GraphSpec = {
      nodes: this.nodes.map((n) => n.toSpec()),
      edges: this.edges.map((e) => ({ ...e })),
      ...(this.deadlineText !== undefined ? { deadline: this.deadlineText } : {}),
    };
    const problems = [...validateGraph(spec), ...this.nodes.flatMap((n) => n.problems())];
    if (problems.length > 0) throw new InvalidGraphError(problems);
    return spec;
  }

  /** The built spec in its canonical JSON form, as `adagio start` and `PUT /v0/runs` take it. */
  toJSON(): JsonValue {
    return graphToJson(this.build());
  }
}

export class NodeBuilder<A extends ArgSpecs> {
  private readonly metadata: Metadata;
  private readonly retries: NodeSpec['retry'] = {};
  private rule?: TriggerRule;
  private readonly declared?: ArgSpecs;
  private readonly runtime: string;
  private timeoutText?: string;

  constructor(
    private readonly workflow: Workflow,
    readonly name: string,
    task: Task<A>,
  ) {
    this.runtime = task.runtime;
    this.metadata = Object.fromEntries(Object.entries(task.metadata).map(([k, v]) => [k, [...v]]));
    this.declared = task.args;
  }

  /** Runs after every given node has succeeded (or as `trigger` says). */
  dependsOn(...upstream: NodeRef[]): this {
    for (const u of upstream) this.workflow.addEdge(nameOf(u), this.name);
    return this;
  }

  /**
   * Attempts allowed per conclusion, e.g. `{ fail: 3 }`: up to 3 FAIL attempts
   * in total. `backoff` (rule 5) delays each retry of the conclusions counted
   * in the same call: `{ fail: 3, error: 2, backoff: { initial: '1s', factor: 2, max: '1m', jitter: 0.2 } }`.
   * As in a graph file, where a backoff sits inside `retry.fail` or
   * `retry.error` beside its `max_attempts`, a backoff belongs to a count:
   * given without `fail` or `error` it throws InvalidArgumentError. A later
   * call replaces the policy (count and backoff) of each conclusion it counts.
   */
  retry(policy: { fail?: number; error?: number; backoff?: Backoff }): this {
    if (policy.backoff && policy.fail === undefined && policy.error === undefined)
      throw new InvalidArgumentError(
        `node "${this.name}": a retry backoff needs a retry count: give it with fail or error, e.g. retry({ fail: 3, backoff })`,
      );
    const set = (key: 'fail' | 'error', n: number | undefined) => {
      if (n !== undefined)
        this.retries[key] = {
          maxAttempts: n,
          ...(policy.backoff ? { backoff: { ...policy.backoff } } : {}),
        } satisfies RetrySpec;
    };
    set('fail', policy.fail);
    set('error', policy.error);
    return this;
  }

  /** How long one attempt may run (rule 11), e.g. `'30m'`: past it the attempt is an ERROR. */
  timeout(duration: string): this {
    this.timeoutText = duration;
    return this;
  }

  /**
   * When this node runs, judged once its upstream nodes completed (rule 14):
   * `all_done` for cleanup, `one_failed` for a failure handler; the default
   * is `all_success`. A node triggered below a failure gets inputs from the
   * upstream nodes that succeeded only.
   */
  trigger(rule: TriggerRule): this {
    this.rule = rule;
    return this;
  }

  /** Feeds argument `arg` from `upstream`'s output (and makes this node depend on it). */
  argFrom(arg: ArgName<A>, upstream: NodeRef): this {
    const source = nameOf(upstream);
    this.metadata[inputKey(this.runtime, arg)] = [source];
    this.workflow.addEdge(source, this.name);
    return this;
  }

  /** Sets raw metadata, for annotations or runtimes the builder does not know. */
  meta(key: string, ...values: string[]): this {
    // Defined, not assigned: assigning "__proto__" would set the object's prototype and lose the entry, so
    // build() could not refuse the reserved key as the store does.
    Object.defineProperty(this.metadata, key, {
      value: values,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    return this;
  }

  /** @internal */
  toSpec(): NodeSpec {
    const retry: NodeSpec['retry'] = {};
    for (const [k, v] of Object.entries(this.retries)) retry[k as 'fail' | 'error'] = { ...v };
    return {
      name: this.name,
      runtime: this.runtime,
      metadata: Object.fromEntries(Object.entries(this.metadata).map(([k, v]) => [k, [...v]])),
      retry,
      ...(this.timeoutText !== undefined ? { timeout: this.timeoutText } : {}),
      ...(this.rule ? { trigger: this.rule } : {}),
    };
  }

  /** @internal Problems only a typed runtime's declaration can reveal: unknown or missing arguments. */
  problems(): string[] {
    const specs = this.declared;
    if (!specs) return [];
    const out: string[] = [];
    const where = `node "${this.name}"`;
    for (const prefix of [ARGUMENTS_PREFIX, LEGACY_ARGUMENTS_PREFIX, INPUTS_PREFIX]) {
      const own = `${prefix}${this.runtime}.`;
      for (const key of Object.keys(this.metadata)) {
        const arg = key.startsWith(own) ? key.slice(own.length) : undefined;
        if (arg !== undefined && !Object.hasOwn(specs, arg))
          out.push(`${where}: runtime "${this.runtime}" has no argument "${arg}"`);
      }
    }
    for (const [arg, spec] of Object.entries(specs)) {
      if (spec.presence !== 'required') continue;
      // The runtime's rule (resolveArgs): an input mapping names a node; an argument key gives a value as givesValue says.
      const set =
        (this.metadata[inputKey(this.runtime, arg)]?.length ?? 0) > 0 ||
        [argumentKey(this.runtime, arg), legacyArgumentKey(this.runtime, arg)].some((k) =>
          givesValue(spec, this.metadata[k]),
        );
      if (!set)
        out.push(
          `${where}: runtime "${this.runtime}" needs argument "${arg}" (give it a value or use argFrom)`,
        );
    }
    return out;
  }
}

function nameOf(ref: NodeRef): string {
  return typeof ref === 'string' ? ref : ref.name;
}
