import { type ArgSpecs, ArgumentError, type ArgValues, resolveArgs } from './args.js';
import type { Runtime, RuntimeContext, RuntimeResult } from './runtime.js';
import { type TaskHelper, taskHelper } from './task.js';

export interface RuntimeDefinition<A extends ArgSpecs> {
  name: string;
  args: A;
  /** Called with the node's arguments read and typed; throw or reject and the attempt is an ERROR. */
  run(args: ArgValues<A>, ctx: RuntimeContext): Promise<RuntimeResult> | RuntimeResult;
}

export interface DefinedRuntime<A extends ArgSpecs> extends Runtime {
  readonly args: A;
  /** Typed node helper for the workflow builder: `wf.node('x', myRuntime.task({ ... }))`. */
  readonly task: TaskHelper<A>;
}

/**
 * A runtime from typed argument declarations and a function. A missing or
 * malformed argument never reaches `run`: the attempt is an ERROR whose output
 * names the argument and the problem.
 */
export function defineRuntime<const A extends ArgSpecs>(definition: RuntimeDefinition<A>): DefinedRuntime<A> {
  const { name, args } = definition;
  return {
    name,
    args,
    task: taskHelper(name, args),
    async run(ctx) {
      const values = readArgs(name, args, ctx);
      if (values instanceof ArgumentError) return { conclusion: 'ERROR', output: values.message };
      return definition.run(values, ctx);
    },
  };
}

/** The same for runtimes written as classes: declare `args`, implement `execute`. */
export abstract class TypedRuntime<A extends ArgSpecs> implements Runtime {
  abstract readonly name: string;
  abstract readonly args: A;
  abstract execute(args: ArgValues<A>, ctx: RuntimeContext): Promise<RuntimeResult>;

  async run(ctx: RuntimeContext): Promise<RuntimeResult> {
    const values = readArgs(this.name, this.args, ctx);
    if (values instanceof ArgumentError) return { conclusion: 'ERROR', output: values.message };
    return this.execute(values, ctx);
  }
}

function readArgs<A extends ArgSpecs>(
  name: string,
  args: A,
  ctx: RuntimeContext,
): ArgValues<A> | ArgumentError {
  try {
    return resolveArgs(name, args, ctx.node);
  } catch (e) {
    if (e instanceof ArgumentError) {
      ctx.logger.debug('runtime argument rejected', {
        runtime: name,
        argument: e.argument,
        error: e.message,
      });
      return e;
    }
    throw e;
  }
}
