import type { Logger } from '../log.js';
import type { Metadata, NodeState } from '../model/types.js';
import { InvalidArgumentError } from '../protocol/errors.js';

/**
 * A runtime does the work of one node attempt. The agent pool claims the node,
 * calls `run`, and records what it returns as the attempt.
 */
export interface Runtime {
  /** The name graph nodes use in their `runtime` field. */
  readonly name: string;
  run(ctx: RuntimeContext): Promise<RuntimeResult>;
}

export interface RuntimeContext {
  runId: string;
  /** The node as claimed: its spec (metadata carries the arguments) and `inputs` from upstream nodes. */
  node: NodeState;
  /** 1-based attempt number. */
  attempt: number;
  /**
   * The claim's id: unique per attempt, so work with side effects can use it as
   * an idempotency key (a lapsed claim's work may still be running elsewhere).
   */
  claimId: string;
  /** Aborted on timeout, on shutdown, or when the agent lost its lease; stop promptly. */
  signal: AbortSignal;
  logger: Logger;
  /**
   * Streams output while the attempt runs (the agent pool sends it in batches;
   * `adagio runs logs -f` and the UI show it live). What was written is the
   * start of the attempt's output, kept however the attempt ends; the result's
   * `output` is added after it. Unset where nothing streams (e.g. in tests).
   */
  write?: (chunk: Uint8Array | string) => void;
}

export type RuntimeConclusion = 'SUCCESS' | 'FAIL' | 'ERROR';

export interface RuntimeResult {
  /** SUCCESS: done. FAIL: the work ran and failed. ERROR: it could not run properly. */
  conclusion: RuntimeConclusion;
  /** Strings are stored as UTF-8. Outputs over LIMITS.maxOutputBytes are truncated with a marker. */
  output?: Uint8Array | string;
  metadata?: Metadata;
}

/** Runtimes by name; a name may be registered once. */
export class RuntimeRegistry {
  private readonly byName = new Map<string, Runtime>();

  constructor(runtimes: Iterable<Runtime> = []) {
    for (const r of runtimes) this.register(r);
  }

  register(runtime: Runtime): this {
    if (!runtime.name) throw new InvalidArgumentError('a runtime needs a non-empty name');
    if (this.byName.has(runtime.name))
      throw new InvalidArgumentError(`runtime "${runtime.name}" is registered twice`);
    this.byName.set(runtime.name, runtime);
    return this;
  }

  get(name: string): Runtime | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get names(): string[] {
    return [...this.byName.keys()];
  }

  get size(): number {
    return this.byName.size;
  }

  [Symbol.iterator](): Iterator<Runtime> {
    return this.byName.values();
  }
}
