export { type ArgName, NodeBuilder, Param, Workflow, type WorkflowFile, workflow } from './builder.js';
export { debug, exec, type LooseArgs, type Task, type TaskHelper, task } from './helpers.js';
