/** Builds the context a runtime gets from the pool, for calling runtimes directly in tests. */
import { silentLogger } from '../../src/log.js';
import type { Metadata, NodeState } from '../../src/model/types.js';
import type { RuntimeContext } from '../../src/runtimes/runtime.js';

export function nodeState(
  runtime: string,
  metadata: Metadata = {},
  inputs: Record<string, string> = {},
): NodeState {
  const enc = new TextEncoder();
  return {
    spec: { name: 'n', runtime, metadata, retry: {} },
    status: 'RUNNING',
    attempts: [],
    startedAt: '',
    finishedAt: '',
    inputs: Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, enc.encode(v)])),
  };
}

export function context(
  runtime: string,
  metadata: Metadata = {},
  options: { inputs?: Record<string, string>; signal?: AbortSignal } = {},
): RuntimeContext {
  return {
    runId: 'run-1',
    node: nodeState(runtime, metadata, options.inputs),
    attempt: 1,
    claimId: 'claim-1',
    signal: options.signal ?? new AbortController().signal,
    logger: silentLogger,
  };
}

/** `adagio.arguments.<runtime>.<name>` metadata from a plain object. */
export function args(runtime: string, values: Record<string, string | string[]>): Metadata {
  return Object.fromEntries(
    Object.entries(values).map(([k, v]) => [`adagio.arguments.${runtime}.${k}`, Array.isArray(v) ? v : [v]]),
  );
}

export function text(output: Uint8Array | string | undefined): string {
  if (output === undefined) return '';
  return typeof output === 'string' ? output : new TextDecoder().decode(output);
}
