import { debugRuntime } from './debug.js';
import { execRuntime } from './exec.js';
import { RuntimeRegistry } from './runtime.js';

export * from './args.js';
export * from './debug.js';
export * from './define.js';
export * from './duration.js';
export * from './exec.js';
export * from './exec-command.js';
export * from './exec-env.js';
export * from './glob.js';
export { seededRandom } from './random.js';
export * from './runtime.js';
export * from './task.js';

export interface BuiltinRuntimeOptions {
  /** Globs of the commands `exec` may run; unset allows any. */
  execAllow?: string[];
  /** The agent's environment variables `exec` commands inherit (globs). */
  execPassEnv?: string[];
  /** Loader variables a node's `env` may set anyway (globs). */
  execUnsafeEnv?: string[];
  /** Random source for `debug`'s chances. */
  random?: () => number;
}

/** The runtimes every agent ships with: `exec` and `debug`. */
export function builtinRuntimes(options: BuiltinRuntimeOptions = {}): RuntimeRegistry {
  return new RuntimeRegistry([
    execRuntime({ allow: options.execAllow, passEnv: options.execPassEnv, unsafeEnv: options.execUnsafeEnv }),
    debugRuntime({ random: options.random }),
  ]);
}
