export * from './actions.js';
export * from './scheduler.js';
