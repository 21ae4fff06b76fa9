import { timerDelay } from '../model/duration.js';
import { truncateOutput } from '../model/limits.js';
import { TIMEOUT_METADATA_KEY } from '../model/rules.js';
import type { Metadata } from '../model/types.js';
import { metadataProblem } from '../model/validate.js';
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
/** One empty output for every runtime that returns none: a new typed array per attempt is measurable garbage (npm run bench). */
const NO_OUTPUT = new Uint8Array(0);

export interface AttemptOptions {
  /** How long the attempt may run; undefined or 0: no limit. */
  timeoutMs?: number;
  /** What the timeout is, for its message: the node's own (rule 11, its spec's text) or the agent's default. */
  timeoutSource?: { node: string } | 'agent';
  /** Aborted here on timeout; the caller aborts it on shutdown. `ctx.signal` must be its signal. */
  controller: { abort(reason?: unknown): void };
  /**
   * Gets the attempt's wait as `stopWaiting`: its `stop()` stops waiting for the
   * runtime (its result can no longer be recorded: the lease was lost); the
   * attempt then resolves to undefined.
   */
  holder?: { stopWaiting?: { stop(): void } };
}

/**
 * The outcome to record, or undefined when the attempt was abandoned first.
 * One promise, and a timer only under a timeout, per attempt, settled by
 * whichever comes first: this is the agent's per-node hot path.
 */
export function runAttempt(
  runtime: Runtime,
  ctx: RuntimeContext,
  options: AttemptOptions,
): Promise<AttemptOutcome | undefined> {
  return new Promise((resolve) => {
    const wait = new AttemptWait(runtime.name, resolve);
    const limit = options.timeoutMs;
    if (limit)
      wait.timer = setTimeout(
        () => {
          const outcome = timeoutOutcome(runtime.name, limit, options.timeoutSource ?? 'agent');
          // Tell the runtime to stop, but do not wait for it: a hung runtime must not hold the slot.
          options.controller.abort(new Error(new TextDecoder().decode(outcome.output)));
          wait.settle(outcome);
        },
        timerDelay(limit), // longer timeouts are capped at about 24.8 days
      );
    if (options.holder) options.holder.stopWaiting = wait;
    let pending: Promise<RuntimeResult> | RuntimeResult;
    try {
      pending = runtime.run(ctx);
    } catch (e) {
      // A runtime that throws synchronously is no different from one that rejects.
      return wait.failed(e);
    }
    if (pending instanceof Promise || typeof (pending as { then?: unknown } | undefined)?.then === 'function')
      Promise.resolve(pending).then(wait.resolved, wait.rejected);
    else wait.settle(checkResult(runtime.name, pending));
  });
}

/**
 * An attempt's wait, settled by whichever comes first (result, failure,
 * timeout, abandonment). A class rather than closures: this is made once per
 * node, and its handlers are made once per attempt only when it awaits a promise.
 */
class AttemptWait {
  private settled = false;
  timer?: NodeJS.Timeout;

  constructor(
    private readonly name: string,
    private readonly resolve: (outcome: AttemptOutcome | undefined) => void,
  ) {}

  settle(outcome: AttemptOutcome | undefined): void {
    if (this.settled) return;
    this.settled = true;
    if (this.timer) clearTimeout(this.timer);
    this.resolve(outcome);
  }

  /** Abandoned: the outcome can no longer be recorded. */
  stop(): void {
    this.settle(undefined);
  }

  failed(e: unknown): void {
    this.settle(errorOutcome(`runtime "${this.name}" failed: ${errorMessage(e)}`));
  }

  get resolved(): (result: RuntimeResult) => void {
    return (result) => this.settle(checkResult(this.name, result));
  }

  get rejected(): (e: unknown) => void {
    return (e) => this.failed(e);
  }
}

/** The ERROR of an attempt stopped at its timeout, naming which timeout (rule 11: the node's, in its metadata too). */
export function timeoutOutcome(
  runtime: string,
  ms: number,
  source: { node: string } | 'agent',
): AttemptOutcome {
  if (source === 'agent')
    return errorOutcome(
      `runtime "${runtime}" timed out after ${formatDuration(ms)} (the agent's default timeout)`,
    );
  return {
    ...errorOutcome(`runtime "${runtime}" timed out after ${source.node} (the node's timeout)`),
    metadata: { [TIMEOUT_METADATA_KEY]: [source.node] },
  };
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
  if (result.output === undefined) output = NO_OUTPUT;
  else if (typeof result.output === 'string') output = encoder.encode(result.output);
  else if (result.output instanceof Uint8Array) output = result.output;
  else return errorOutcome(`runtime "${name}" returned an output that is neither a string nor bytes`);
  const metadata: Metadata = {};
  for (const [k, v] of Object.entries(result.metadata ?? {})) {
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
      return errorOutcome(`runtime "${name}" returned metadata "${k}" that is not a list of strings`);
    metadata[k] = v;
  }
  const problem = metadataProblem(metadata);
  if (problem) return errorOutcome(`runtime "${name}" returned ${problem}`);
  return { conclusion: result.conclusion, output: truncateOutput(output), metadata };
}
