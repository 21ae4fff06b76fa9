import { truncateOutput } from '../model/limits.js';
import type { Metadata } from '../model/types.js';
import type { FinishConclusion } from '../protocol/repository.js';
import { formatDuration } from '../runtimes/duration.js';
import type { Runtime, RuntimeContext, RuntimeResult } from '../runtimes/runtime.js';

/**
 * Runs one attempt of a runtime and turns whatever happens into the result to
 * record: a returned result (checked), a throw or rejection (ERROR with the
 * message), or no answer within the timeout (ERROR). A runtime cannot take its
 * agent down with it.
 */
export interface AttemptOutcome {
  conclusion: FinishConclusion;
  output: Uint8Array;
  metadata: Metadata;
}

const CONCLUSIONS: readonly string[] = ['SUCCESS', 'FAIL', 'ERROR'];
const encoder = new TextEncoder();

export interface AttemptOptions {
  timeoutMs: number;
  /** Aborted here on timeout; the caller aborts it on shutdown. `ctx.signal` must be its signal. */
  controller: AbortController;
  /** Resolves when the attempt's result can no longer be recorded (lease lost): stop waiting. */
  abandoned: Promise<void>;
}

/** The outcome to record, or undefined when the attempt was abandoned first. */
export async function runAttempt(
  runtime: Runtime,
  ctx: RuntimeContext,
  options: AttemptOptions,
): Promise<AttemptOutcome | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<AttemptOutcome>((resolve) => {
    timer = setTimeout(() => {
      const message = `runtime "${runtime.name}" timed out after ${formatDuration(options.timeoutMs)}`;
      // Tell the runtime to stop, but do not wait for it: a hung runtime must not hold the slot.
      options.controller.abort(new Error(message));
      resolve(errorOutcome(message));
    }, options.timeoutMs);
  });
  const work = (async () => runtime.run(ctx))().then(
    (result) => checkResult(runtime.name, result),
    (e: unknown) => errorOutcome(`runtime "${runtime.name}" failed: ${errorMessage(e)}`),
  );
  try {
    return await Promise.race([work, timedOut, options.abandoned.then(() => undefined)]);
  } finally {
    clearTimeout(timer);
  }
}

export function errorOutcome(message: string): AttemptOutcome {
  return { conclusion: 'ERROR', output: encoder.encode(message), metadata: {} };
}

export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

/** Runtimes are user code: check the shape of what they return before recording it. */
function checkResult(name: string, result: RuntimeResult | undefined): AttemptOutcome {
  if (!result || typeof result !== 'object' || !CONCLUSIONS.includes(result.conclusion))
    return errorOutcome(
      `runtime "${name}" returned an invalid result (conclusion must be SUCCESS, FAIL or ERROR): ${errorMessage(result)}`.slice(
        0,
        1000,
      ),
    );
  let output: Uint8Array;
  if (result.output === undefined) output = new Uint8Array();
  else if (typeof result.output === 'string') output = encoder.encode(result.output);
  else if (result.output instanceof Uint8Array) output = result.output;
  else return errorOutcome(`runtime "${name}" returned an output that is neither a string nor bytes`);
  const metadata: Metadata = {};
  for (const [k, v] of Object.entries(result.metadata ?? {})) {
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
      return errorOutcome(`runtime "${name}" returned metadata "${k}" that is not a list of strings`);
    metadata[k] = v;
  }
  return { conclusion: result.conclusion, output: truncateOutput(output), metadata };
}
