import { debugRuntime } from './debug.js';
import { execRuntime } from './exec.js';
import { RuntimeRegistry } from './runtime.js';

export * from './args.js';
export * from './debug.js';
export * from './define.js';
export * from './duration.js';
export * from './exec.js';
export { seededRandom } from './random.js';
export * from './runtime.js';
export * from './task.js';

export interface BuiltinRuntimeOptions {
  /** Globs of the commands `exec` may run; unset allows any. */
  execAllow?: string[];
  /** Random source for `debug`'s chances. */
  random?: () => number;
}

/** The runtimes every agent ships with: `exec` and `debug`. */
export function builtinRuntimes(options: BuiltinRuntimeOptions = {}): RuntimeRegistry {
  return new RuntimeRegistry([
    execRuntime({ allow: options.execAllow }),
    debugRuntime({ random: options.random }),
  ]);
}
