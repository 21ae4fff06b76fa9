export { type ArgName, NodeBuilder, Workflow, workflow } from './builder.js';
export { debug, exec, type LooseArgs, type Task, type TaskHelper, task } from './helpers.js';
