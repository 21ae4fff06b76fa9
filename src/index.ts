/**
 * Adagio's public library surface: what a user needs to write workflows, build
 * their own agents and runtimes, and embed or talk to a backend.
 */

export { AgentPool, type AgentPoolCounters, type AgentPoolOptions } from './agent/index.js';
export {
  DEFAULT_DYNAMODB_TABLE,
  DynamoDbRepository,
  type DynamoDbRepositoryOptions,
} from './backends/dynamodb/index.js';
export {
  DEFAULT_ETCD_NAMESPACE,
  EtcdRepository,
  type EtcdRepositoryOptions,
} from './backends/etcd/index.js';
export { MemoryRepository, type MemoryRepositoryOptions } from './backends/memory/index.js';
export { PostgresRepository, type PostgresRepositoryOptions } from './backends/postgres/index.js';
export {
  NotSupportedError,
  RemoteApiError,
  RemoteRepository,
  type RemoteRepositoryOptions,
} from './backends/remote/index.js';
export { AdagioClient, ApiError, type ClientOptions, DEFAULT_ADDRESS } from './client/index.js';
export { createLogger, type Logger, type LogLevel, silentLogger } from './log.js';
export * from './model/index.js';
export * from './protocol/index.js';
export {
  type ArgSpecs,
  ArgumentError,
  type ArgValues,
  arg,
  type BuiltinRuntimeOptions,
  builtinRuntimes,
  type DebugRuntimeOptions,
  type DefinedRuntime,
  debugRuntime,
  defineRuntime,
  type ExecRuntimeOptions,
  execRuntime,
  formatDuration,
  parseDuration,
  type Runtime,
  type RuntimeConclusion,
  type RuntimeContext,
  type RuntimeDefinition,
  RuntimeRegistry,
  type RuntimeResult,
  resolveArgs,
  seededRandom,
  type TaskArgs,
  TypedRuntime,
} from './runtimes/index.js';
export {
  backfillSchedule,
  Scheduler,
  type SchedulerOptions,
  scheduleView,
  startSlot,
  triggerSchedule,
} from './scheduler/index.js';
export {
  debug,
  exec,
  NodeBuilder,
  Param,
  type Task,
  task,
  Workflow,
  type WorkflowFile,
  workflow,
} from './workflow/index.js';
