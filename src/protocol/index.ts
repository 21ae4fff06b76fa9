export * from './checks.js';
export * from './errors.js';
export * from './event-queue.js';
export * from './repository.js';
