/** Durations are the model's (graph files write them too: retry backoff, timeouts, deadlines). */
export { DurationError, formatDuration, parseDuration } from '../model/duration.js';
