import { DEBUG_ARGS } from '../runtimes/debug.js';
import { EXEC_ARGS } from '../runtimes/exec.js';
import { taskHelper } from '../runtimes/task.js';

/**
 * Typed node helpers for the built-in runtimes. Your own runtime gets one from
 * `defineRuntime(...).task`; any runtime by name from `task(runtime, args)`.
 */

/** `exec({ command: 'echo', args: ['hi'] })`; `exec.partial({...})` when an argument comes from `argFrom`. */
export const exec = taskHelper('exec', EXEC_ARGS);

/** `debug({ conclusion: 'fail', sleep: '1s', chances: ['0.5 fail'] })`. */
export const debug = taskHelper('debug', DEBUG_ARGS);

export { type LooseArgs, type Task, type TaskHelper, task } from '../runtimes/task.js';
