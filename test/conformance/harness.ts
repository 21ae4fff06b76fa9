/**
 * The conformance suite's vocabulary: a fresh repository per test, agents
 * that claim and finish, event collectors over subscribe/watch with bounded
 * waits. Helpers assert; tests read as the protocol's rules.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { GraphSpec, Metadata, NodeState, NodeStatus, Run } from '../../src/model/types.js';
import type {
  ClaimedNode,
  FinishConclusion,
  FinishResult,
  HandOff,
  Lease,
  NodeEvent,
  Repository,
  WatchEvent,
} from '../../src/protocol/repository.js';
import { bytes, node, RUNTIME } from './fixtures.js';

export interface BackendUnderTest {
  repository: Repository;
  teardown(): Promise<void>;
  /**
   * Moves the clock the store judges time rules by (retry delays, node
   * timeouts, run deadlines) `ms` ahead, then runs the store's time sweep:
   * the one injectable clock of the suite (memory and etcd: the process's
   * clock, test/support/clock.ts; PostgreSQL: its adagio_now_ms()). Leases
   * are not moved on etcd and PostgreSQL; on memory they are, so advances in
   * a test stay well under LONG_LEASE_MS.
   */
  advance(ms: number): Promise<void>;
}

export type BackendFactory = () => Promise<BackendUnderTest>;

/** Ordinary agents hold a long lease so slow backends never orphan them by accident. */
export const LONG_LEASE_MS = 60_000;
/** Leases meant to lapse. Backends may round up (etcd to ~2 s); waits use the granted TTL. */
export const SHORT_LEASE_MS = 1_000;
/** Bound on waiting for an event that must come (a NODE_READY, a lapse noticed). */
export const EVENT_TIMEOUT_MS = 10_000;
/**
 * Per-test bound, so a hung backend fails a test instead of stalling the run. A bound on
 * hangs, not a speed target: the size tests (2,000 nodes) take up to a minute on a loaded
 * 2-core machine.
 */
export const TEST_TIMEOUT_MS = 180_000;

/** A test body: gets a harness over a fresh repository. */
export type ConformanceBody = (h: Harness) => Promise<void>;
export type ConformanceTest = (
  name: string,
  body: ConformanceBody,
  options?: { requires?: Capability },
) => void;

/**
 * What a Repository may legitimately not offer, named so the list is explicit.
 * A backend declares what it lacks (runConformance's `lacks`); each test that
 * needs a capability says so (`requires`). Against a backend that lacks it,
 * the test is not skipped: it is replaced by one that checks the backend
 * refuses the capability with a clear, typed error.
 *
 * - `retention`: deleteCompletedRunsBefore. Retention runs inside the API
 *   process (adagiod api -retention), next to the store; RemoteRepository, the
 *   agents' view of the API, has no call for it and refuses it with
 *   NotSupportedError (code invalid_argument).
 * - `scheduler`: advanceSchedule, the compare-and-set of a schedule's next
 *   slot. Schedulers run inside the API process next to the store; the API
 *   offers schedules, not their internal step, so RemoteRepository refuses it.
 * - `handOff`: rule 21, a finish claiming the dependents it makes READY for
 *   its caller. The rule lets a store hand off none; one that does not (yet)
 *   must then leave them READY and claimable as if no hand-off was asked.
 */
export type Capability = 'retention' | 'scheduler' | 'handOff';

const REFUSALS: Record<Capability, (repo: Repository) => Promise<void>> = {
  retention: async (repo) => {
    await assert.rejects(repo.deleteCompletedRunsBefore(Date.now()), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'invalid_argument');
      assert.match(e.message, /deleteCompletedRunsBefore/);
      return true;
    });
  },
  handOff: async (repo) => {
    const run = await repo.start({
      nodes: [node('a'), node('b')],
      edges: [{ source: 'a', destination: 'b' }],
    });
    const lease = await repo.grantLease(LONG_LEASE_MS);
    const a = await repo.claim({ runId: run.id, node: 'a', leaseId: lease.id, agentId: 'alice' });
    assert.ok(a);
    const offer = { leaseId: lease.id, agentIds: ['alice'], runtimes: [RUNTIME] };
    const result = await repo.finish({
      runId: run.id,
      node: 'a',
      claimId: a.claimId,
      conclusion: 'SUCCESS',
      handOff: offer,
    });
    assert.deepEqual(result.handedOff, [], 'nothing handed off');
    assert.equal(repo.handsOff, false, 'and it says so: callers need not build offers');
    const b = await repo.claim({ runId: run.id, node: 'b', leaseId: lease.id, agentId: 'bob' });
    assert.ok(b, 'the dependent is READY and claimable as usual');
  },
  scheduler: async (repo) => {
    const step = { from: '2026-01-01T00:00:00Z', to: '2026-01-01T00:01:00Z', records: [] };
    await assert.rejects(repo.advanceSchedule('s', step), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'invalid_argument');
      assert.match(e.message, /advanceSchedule/);
      return true;
    });
  },
};

/** `it`, wrapped: a fresh repository from the factory, disposed and torn down whatever happens. */
export function conformanceTest(factory: BackendFactory, lacks: readonly Capability[] = []): ConformanceTest {
  return (name, body, options = {}) => {
    const missing =
      options.requires !== undefined && lacks.includes(options.requires) ? options.requires : undefined;
    const title = missing
      ? `${name} — instead, as this backend lacks ${missing}: it refuses ${missing} clearly`
      : name;
    const run: ConformanceBody = missing ? (h) => REFUSALS[missing](h.repo) : body;
    it(title, { timeout: TEST_TIMEOUT_MS }, async () => {
      const backend = await factory();
      const h = new Harness(backend.repository, (ms) => backend.advance(ms));
      try {
        await run(h);
      } finally {
        try {
          await h.dispose();
        } finally {
          await backend.teardown();
        }
      }
    });
  };
}

export class Harness {
  private readonly collectors: Collector<unknown>[] = [];
  private readonly heartbeats: Heartbeat[] = [];

  constructor(
    readonly repo: Repository,
    /** Moves the store's clock ahead and runs its time sweep (BackendUnderTest.advance). */
    readonly advance: (ms: number) => Promise<void>,
  ) {}

  /** A registered agent with its own lease (or a shared one: one lease per agent process). */
  async agent(
    id: string,
    options: { ttlMs?: number; lease?: Lease; runtimes?: string[] } = {},
  ): Promise<TestAgent> {
    const lease = options.lease ?? (await this.repo.grantLease(options.ttlMs ?? LONG_LEASE_MS));
    await this.repo.registerAgent(lease.id, {
      id,
      runtimes: (options.runtimes ?? [RUNTIME]).map((name) => ({ name })),
      hostname: 'conformance-host',
    });
    return new TestAgent(this.repo, id, lease);
  }

  subscribe(runtimes: string[] = [RUNTIME]): Collector<NodeEvent> {
    return this.track(new Collector((signal) => this.repo.subscribe({ runtimes, signal })));
  }

  watch(runId: string): Collector<WatchEvent> {
    return this.track(new Collector((signal) => this.repo.watch(runId, { signal })));
  }

  /** Calls keepAlive every quarter TTL until stopped (or the test ends). */
  heartbeat(lease: Lease): Heartbeat {
    const hb = new Heartbeat(this.repo, lease);
    this.heartbeats.push(hb);
    return hb;
  }

  async start(spec: GraphSpec): Promise<Run> {
    return this.repo.start(spec);
  }

  async node(runId: string, name: string): Promise<NodeState> {
    const run = await this.repo.inspect(runId);
    const n = run.nodes.find((x) => x.spec.name === name);
    assert.ok(n, `run ${runId} has no node ${name}`);
    return n;
  }

  /** Node name → status, from a fresh inspect. */
  async statuses(runId: string): Promise<Record<string, NodeStatus>> {
    return statusesOf(await this.repo.inspect(runId));
  }

  /** Names of the run's nodes in a status, sorted. */
  async namesIn(runId: string, status: NodeStatus): Promise<string[]> {
    return namesIn(await this.repo.inspect(runId), status);
  }

  async dispose(): Promise<void> {
    for (const hb of this.heartbeats) hb.stop();
    await Promise.allSettled(this.collectors.map((c) => c.stop()));
  }

  private track<T>(c: Collector<T>): Collector<T> {
    this.collectors.push(c as Collector<unknown>);
    return c;
  }
}

export function statusesOf(run: Run): Record<string, NodeStatus> {
  return Object.fromEntries(run.nodes.map((n) => [n.spec.name, n.status]));
}

export function namesIn(run: Run, status: NodeStatus): string[] {
  return run.nodes
    .filter((n) => n.status === status)
    .map((n) => n.spec.name)
    .sort();
}

export class TestAgent {
  constructor(
    readonly repo: Repository,
    readonly id: string,
    readonly lease: Lease,
  ) {}

  claim(runId: string, node: string, metadata?: Metadata): Promise<ClaimedNode | undefined> {
    return this.repo.claim({ runId, node, leaseId: this.lease.id, agentId: this.id, metadata });
  }

  /** Claims a node that must be claimable. */
  async mustClaim(runId: string, node: string, metadata?: Metadata): Promise<ClaimedNode> {
    const claimed = await this.claim(runId, node, metadata);
    assert.ok(claimed, `${this.id} could not claim ${node}`);
    assert.equal(claimed.node.spec.name, node);
    return claimed;
  }

  /** Tries to claim each named node; returns the ones won, by name. */
  async claimEach(runId: string, names: string[]): Promise<Map<string, ClaimedNode>> {
    const won = new Map<string, ClaimedNode>();
    for (const name of names) {
      const claimed = await this.claim(runId, name);
      if (claimed) won.set(name, claimed);
    }
    return won;
  }

  finish(
    claimed: ClaimedNode,
    conclusion: FinishConclusion,
    output = '',
    metadata: Metadata = {},
    handOff?: HandOff,
  ): Promise<FinishResult> {
    return this.repo.finish({
      runId: claimed.runId,
      node: claimed.node.spec.name,
      claimId: claimed.claimId,
      conclusion,
      output: bytes(output),
      metadata,
      handOff,
    });
  }

  /** Rule 21: finishes offering to take over up to `places` of what it makes READY (`agentIds` default `<id>-1`…). */
  handingOff(
    claimed: ClaimedNode,
    conclusion: FinishConclusion,
    offer: { places?: number; runtimes?: string[]; agentIds?: string[]; output?: string } = {},
  ): Promise<FinishResult> {
    const agentIds =
      offer.agentIds ?? Array.from({ length: offer.places ?? 1 }, (_, i) => `${this.id}-${i + 1}`);
    return this.finish(
      claimed,
      conclusion,
      offer.output ?? '',
      {},
      {
        leaseId: this.lease.id,
        agentIds,
        runtimes: offer.runtimes ?? [RUNTIME],
      },
    );
  }

  /** Claims a READY node and finishes it in one step. */
  async run(runId: string, node: string, conclusion: FinishConclusion, output = ''): Promise<ClaimedNode> {
    const claimed = await this.mustClaim(runId, node);
    await this.finish(claimed, conclusion, output);
    return claimed;
  }
}

export class Heartbeat {
  private readonly timer: NodeJS.Timeout;
  failure?: unknown;

  constructor(repo: Repository, lease: Lease) {
    this.timer = setInterval(
      () => {
        repo.keepAlive(lease.id).catch((e: unknown) => {
          this.failure ??= e;
        });
      },
      Math.max(50, Math.floor(lease.ttlMs / 4)),
    );
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * Collects a stream's items as they arrive. `waitFor` awaits a condition over
 * what was collected, bounded; `stop` aborts and checks the loop ends cleanly.
 */
export class Collector<T> {
  readonly items: T[] = [];
  /** Set when the stream's loop threw. */
  error?: unknown;
  ended = false;
  private readonly controller = new AbortController();
  private readonly done: Promise<void>;
  /** Waiters to wake on each new item or the end; several waits may be pending at once. */
  private readonly wakers = new Set<() => void>();

  constructor(open: (signal: AbortSignal) => AsyncIterable<T>) {
    this.done = (async () => {
      try {
        for await (const item of open(this.controller.signal)) {
          this.items.push(item);
          this.notify();
        }
      } catch (e) {
        this.error = e;
      } finally {
        this.ended = true;
        this.notify();
      }
    })();
  }

  /** The current count: pass as `after` to wait only for items that arrive later. */
  mark(): number {
    return this.items.length;
  }

  /** Waits until `predicate` holds over the items (from `after` on); fails naming `what`. */
  async waitFor(
    what: string,
    predicate: (items: T[]) => boolean,
    options: { after?: number; timeoutMs?: number } = {},
  ): Promise<void> {
    const after = options.after ?? 0;
    const deadline = Date.now() + (options.timeoutMs ?? EVENT_TIMEOUT_MS);
    while (!predicate(this.items.slice(after))) {
      if (this.error !== undefined) throw this.error;
      const left = deadline - Date.now();
      if (this.ended || left <= 0)
        assert.fail(
          `${this.ended ? 'stream ended' : 'timed out'} waiting for ${what}; got ${JSON.stringify(this.items.slice(after).map(summarise))}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.wakers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.wakers.add(wake);
      });
    }
  }

  private notify(): void {
    for (const wake of [...this.wakers]) wake();
  }

  /** Waits for one item matching `match` (from `after` on) and returns it. */
  async waitForItem(
    what: string,
    match: (item: T) => boolean,
    options: { after?: number; timeoutMs?: number } = {},
  ): Promise<T> {
    await this.waitFor(what, (items) => items.some(match), options);
    return this.items.slice(options.after ?? 0).find(match)!;
  }

  /** Waits for the stream to end by itself (a watch after its run completed). */
  async waitForEnd(what: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<void> {
    await withTimeout(this.done, timeoutMs, `${what}: the stream did not end`);
    if (this.error !== undefined) throw this.error;
  }

  /** Aborts the stream; the consumer's loop must exit without throwing. */
  async stop(): Promise<void> {
    this.controller.abort();
    await withTimeout(this.done, EVENT_TIMEOUT_MS, 'the stream did not end after its signal aborted');
    if (this.error !== undefined) throw this.error;
  }
}

function summarise(item: unknown): unknown {
  if (item && typeof item === 'object' && 'type' in item) {
    const e = item as { type: string; node?: unknown; run?: Run };
    if (e.type === 'snapshot') return { type: e.type, run: e.run?.id };
    if (e.node && typeof e.node === 'object')
      return { type: e.type, node: (e.node as NodeState).spec.name, status: (e.node as NodeState).status };
  }
  return item;
}

export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new assert.AssertionError({ message })), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns true; fails naming `what` after the timeout. */
export async function eventually(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs = EVENT_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Node names with a NODE_READY (or other `type`) event of the run, deduplicated and sorted. */
export function eventNodes(
  events: NodeEvent[],
  runId: string,
  type: NodeEvent['type'] = 'NODE_READY',
): string[] {
  return [...new Set(events.filter((e) => e.runId === runId && e.type === type).map((e) => e.node))].sort();
}

/** True when every `want` node has a `type` event of the run. */
export function sawAll(
  events: NodeEvent[],
  runId: string,
  want: string[],
  type: NodeEvent['type'] = 'NODE_READY',
): boolean {
  const seen = new Set(eventNodes(events, runId, type));
  return want.every((n) => seen.has(n));
}

/** Resolves once the wall clock has moved past `ms`, so later records get a later timestamp. */
export async function clockPast(ms: number): Promise<void> {
  while (Date.now() <= ms) await new Promise((r) => setTimeout(r, Math.max(1, ms - Date.now() + 1)));
}
