/**
 * Size limits, documented in the README. They bound what one request can make
 * a backend store, and keep every graph inside one etcd transaction budget
 * when written in chunks.
 */
export const LIMITS = {
  maxNodes: 20_000,
  maxEdges: 100_000,
  /** Node names and runtime names. */
  maxNameLength: 256,
  /** Serialized metadata (keys plus values) of one node. */
  maxNodeMetadataBytes: 64 * 1024,
  /** An attempt's output; longer outputs are truncated with a marker. */
  maxOutputBytes: 1024 * 1024,
  /**
   * Attempt output bytes one read (Inspect, Start, Cancel, a Watch's first
   * message) carries; past it outputs are left out, marked, and fetched one
   * attempt at a time. Keeps a read's cost within the run's size, not attempts × output.
   */
  maxReadOutputBytes: 4 * 1024 * 1024,
  /** Bytes of events a Watch may queue for a reader that does not keep up; past it the watch is cut off. */
  maxWatchBufferBytes: 16 * 1024 * 1024,
  /** Retry max_attempts ceiling. */
  maxAttempts: 1000,
  /** Ids a caller names: runs, agents, leases, claims (UTF-8 bytes). Agent hostnames too. */
  maxIdBytes: 256,
  /** Runtimes one agent may register. */
  maxAgentRuntimes: 256,
  /** Failed node names one runs-list summary carries (rule 19): the rest are counted, not named. */
  maxListedFailedNodes: 5,
  /** Longest lease TTL: a day. Past it a dead agent would hold its claims for longer than anyone waits. */
  maxLeaseTtlMs: 24 * 60 * 60 * 1000,
} as const;

export const TRUNCATION_MARKER = '\n…[output truncated by adagio]';

/** Truncates an output over the limit, ending it with a marker so the cut is never silent. */
export function truncateOutput(output: Uint8Array, max = LIMITS.maxOutputBytes): Uint8Array {
  if (output.byteLength <= max) return output;
  const marker = new TextEncoder().encode(TRUNCATION_MARKER);
  const out = new Uint8Array(max);
  out.set(output.subarray(0, max - marker.byteLength));
  out.set(marker, max - marker.byteLength);
  return out;
}

const markerBytes = new TextEncoder().encode(TRUNCATION_MARKER);

/**
 * What an attempt's streamed output gains from one more chunk, append-only so
 * every backend can store chunks as they come: content up to `max` less the
 * marker's length, then the marker once, then nothing. `existingLength` is
 * what the attempt streamed so far (an output this function built).
 */
export function boundedAppend(
  existingLength: number,
  chunk: Uint8Array,
  max = LIMITS.maxOutputBytes,
): Uint8Array {
  const room = Math.max(0, max - markerBytes.byteLength);
  if (existingLength > room || chunk.byteLength === 0) return new Uint8Array();
  if (existingLength + chunk.byteLength <= room) return chunk;
  const out = new Uint8Array(room - existingLength + markerBytes.byteLength);
  out.set(chunk.subarray(0, room - existingLength));
  out.set(markerBytes, room - existingLength);
  return out;
}

/**
 * The output an attempt records: what it streamed, then what its finish (or
 * the agent recovering it) adds, within the cap. Without streamed output this
 * is the finish output as before, cut with the marker when over the cap.
 */
export function attemptOutput(streamed: Uint8Array, finishOutput: Uint8Array): Uint8Array {
  if (streamed.byteLength === 0) return truncateOutput(finishOutput);
  const tail = boundedAppend(streamed.byteLength, finishOutput);
  if (tail.byteLength === 0) return streamed;
  const out = new Uint8Array(streamed.byteLength + tail.byteLength);
  out.set(streamed);
  out.set(tail, streamed.byteLength);
  return out;
}

/** Concatenates byte arrays (the streamed chunks of an attempt). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let size = 0;
  for (const p of parts) size += p.byteLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
