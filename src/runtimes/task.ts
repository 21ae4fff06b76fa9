import type { Metadata } from '../model/types.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { type ArgSpecs, argumentKey, type TaskArgs } from './args.js';

/**
 * What a node runs: a runtime name and the metadata carrying its arguments.
 * Produced by a runtime's typed helper (`exec({...})`, `myRuntime.task({...})`)
 * or the generic `task(runtime, args)`; consumed by the workflow builder.
 */
export interface Task<A extends ArgSpecs = ArgSpecs> {
  readonly runtime: string;
  readonly metadata: Metadata;
  /** The runtime's declared arguments when known, so the builder can check names and required ones. */
  readonly args?: A;
}

/** Arguments of a runtime with no typed declaration: lists are kept, scalars become strings, objects JSON. */
export type LooseArgs = Record<string, string | readonly string[] | number | boolean | object | undefined>;

// Helpers take no arguments object when every argument is optional.
type HelperParams<A extends ArgSpecs> =
  Record<never, never> extends TaskArgs<A> ? [args?: TaskArgs<A>] : [args: TaskArgs<A>];

export interface TaskHelper<A extends ArgSpecs> {
  (...args: HelperParams<A>): Task<A>;
  /** For arguments supplied later with `argFrom`; the builder checks required ones at build time. */
  partial(args?: Partial<TaskArgs<A>>): Task<A>;
}

/** A typed node helper for a runtime's declared arguments. */
export function taskHelper<A extends ArgSpecs>(runtime: string, specs: A): TaskHelper<A> {
  const make = (args: Record<string, unknown> = {}): Task<A> => {
    const metadata: Metadata = {};
    for (const [name, value] of Object.entries(args)) {
      if (value === undefined) continue;
      const spec = specs[name];
      if (!spec)
        throw new InvalidArgumentError(
          `runtime "${runtime}" has no argument "${name}" (it takes ${Object.keys(specs).join(', ') || 'none'})`,
        );
      try {
        metadata[argumentKey(runtime, name)] = spec.encode(value);
      } catch (e) {
        throw new InvalidArgumentError(`argument "${name}" of runtime "${runtime}": ${(e as Error).message}`);
      }
    }
    return { runtime, metadata, args: specs };
  };
  const helper = ((...params: HelperParams<A>) =>
    make(params[0] as Record<string, unknown>)) as TaskHelper<A>;
  helper.partial = (args) => make(args as Record<string, unknown>);
  return helper;
}

/** A node for any runtime, arguments written as `adagio.arguments.<runtime>.<name>`. */
export function task(runtime: string, args: LooseArgs = {}): Task {
  const metadata: Metadata = {};
  for (const [name, value] of Object.entries(args)) {
    if (value === undefined) continue;
    metadata[argumentKey(runtime, name)] = Array.isArray(value)
      ? value.map(String)
      : typeof value === 'object'
        ? [JSON.stringify(value)]
        : [String(value)];
  }
  return { runtime, metadata };
}
