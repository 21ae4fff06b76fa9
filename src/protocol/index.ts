export * from './errors.js';
export * from './event-queue.js';
export * from './pending-events.js';
export * from './repository.js';
