export { type AttemptOutcome, runAttempt } from './attempt.js';
export { Backoff, type BackoffOptions } from './backoff.js';
export { AgentPool, type AgentPoolCounters, type AgentPoolOptions } from './pool.js';
