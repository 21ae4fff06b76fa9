/** Shared by the pool and end-to-end tests: bounded waits over the real memory backend. */
import assert from 'node:assert/strict';
import { AgentPool, type AgentPoolOptions } from '../../src/agent/index.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import type { GraphSpec, Metadata, NodeState, Run } from '../../src/model/types.js';
import type { Repository } from '../../src/protocol/repository.js';
import { debugRuntime } from '../../src/runtimes/debug.js';
import type { Runtime, RuntimeContext, RuntimeResult } from '../../src/runtimes/runtime.js';

/** Waits (bounded) until the run completes, then returns it. */
export async function completed(repo: Repository, runId: string, ms = 15_000): Promise<Run> {
  const signal = AbortSignal.timeout(ms);
  try {
    for await (const ev of repo.watch(runId, { signal })) {
      if (ev.type === 'snapshot' && ev.run.status === 'COMPLETED') break;
      if (ev.type === 'node' && ev.runStatus === 'COMPLETED') break;
    }
  } catch {
    // a timed-out watch ends either way; the assertion below reports it
  }
  const run = await repo.inspect(runId);
  assert.equal(run.status, 'COMPLETED', `run ${runId} did not complete within ${ms} ms: ${summary(run)}`);
  return run;
}

/** Polls `check` until it returns true; fails after `ms`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function node(run: Run, name: string): NodeState {
  const n = run.nodes.find((x) => x.spec.name === name);
  assert.ok(n, `node ${name} in run`);
  return n;
}

export function text(bytes: Uint8Array | undefined): string {
  return bytes ? new TextDecoder().decode(bytes) : '';
}

export function conclusions(n: NodeState): string[] {
  return n.attempts.map((a) => a.conclusion);
}

export function summary(run: Run): string {
  return run.nodes.map((n) => `${n.spec.name}:${n.status}[${conclusions(n).join(',')}]`).join(' ');
}

export function spec(
  nodes: {
    name: string;
    runtime: string;
    metadata?: Metadata;
    retry?: { fail?: number; error?: number };
    timeout?: string;
  }[],
  edges: [string, string][] = [],
): GraphSpec {
  return {
    nodes: nodes.map((n) => ({
      name: n.name,
      runtime: n.runtime,
      metadata: n.metadata ?? {},
      retry: {
        ...(n.retry?.fail !== undefined ? { fail: { maxAttempts: n.retry.fail } } : {}),
        ...(n.retry?.error !== undefined ? { error: { maxAttempts: n.retry.error } } : {}),
      },
      ...(n.timeout ? { timeout: n.timeout } : {}),
    })),
    edges: edges.map(([source, destination]) => ({ source, destination })),
  };
}

/** A runtime from a function, for tests. */
export function runtime(
  name: string,
  run: (ctx: RuntimeContext) => Promise<RuntimeResult> | RuntimeResult,
): Runtime {
  return { name, run: async (ctx) => run(ctx) };
}

/** Resolves when the signal aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * A pool on the memory backend with the tests' short lease and backoffs (2
 * slots, the debug runtime, unless `options` say otherwise); `cleanup` gets
 * its stop and the repository's close.
 */
export function testPool(
  cleanup: (() => Promise<void>)[],
  options: Partial<AgentPoolOptions> = {},
  repo = new MemoryRepository({ leaseCheckIntervalMs: 20 }),
): { repo: MemoryRepository; pool: AgentPool } {
  const pool = new AgentPool({
    repository: repo,
    runtimes: [debugRuntime()],
    concurrency: 2,
    leaseTtlMs: 2000,
    abortWaitMs: 300,
    backoff: { initialMs: 5, maxMs: 50 },
    ...options,
  });
  cleanup.push(
    () => pool.stop({ graceMs: 0 }),
    () => repo.close(),
  );
  return { repo, pool };
}
