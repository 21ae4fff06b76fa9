export * from './explain.js';
export * from './ids.js';
export * from './limits.js';
export * from './requests.js';
export * from './rules.js';
export * from './types.js';
export * from './validate.js';
export * from './wire.js';
