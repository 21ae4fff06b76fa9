/** The agent pool's side of hand-off (design rule 21), on the real memory backend. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import type { ClaimRef, FinishRequest, FinishResult, Repository } from '../../src/protocol/repository.js';
import { completed, runtime, spec, testPool, until } from './helpers.js';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** A memory repository that counts claims and records each finish's offer. */
class Watched extends MemoryRepository {
  claims = 0;
  offers: FinishRequest['handOff'][] = [];
  override async claim(...args: Parameters<Repository['claim']>) {
    this.claims++;
    return super.claim(...args);
  }
  override async finish(request: FinishRequest): Promise<FinishResult> {
    this.offers.push(request.handOff);
    return super.finish(request);
  }
}

const chain = (n: number, rt: string) =>
  spec(
    Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime: rt })),
    Array.from({ length: n - 1 }, (_, i) => [`n${i}`, `n${i + 1}`] as [string, string]),
  );

describe('agent pool: hand-off (rule 21)', () => {
  it('runs a chain on what its finishes hand off: one claim for the whole run', async () => {
    const repo = new Watched({ leaseCheckIntervalMs: 20 });
    const ran: string[] = [];
    const rt = runtime('chain', async (ctx) => {
      ran.push(ctx.node.spec.name);
      return { conclusion: 'SUCCESS', output: new TextEncoder().encode(ctx.node.spec.name) };
    });
    const { pool } = testPool(cleanup, { runtimes: [rt], concurrency: 2 }, repo);
    await pool.start();
    const run = await repo.start(chain(5, 'chain'));
    const done = await completed(repo, run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    assert.deepEqual(ran, ['n0', 'n1', 'n2', 'n3', 'n4']);
    assert.equal(pool.counters.handedOff, 4, 'every node after the first came with its upstream finish');
    assert.equal(repo.claims, 1, 'only the first node was claimed');
    const offer = repo.offers[0]!;
    assert.equal(offer.leaseId, pool.leaseId);
    assert.deepEqual(offer.runtimes, ['chain']);
    for (const id of offer.agentIds)
      assert.ok(pool.agentIds.includes(id), `${id} is one of the pool's agents`);
    // Inputs came with the hand-off: each node's attempt ran with its upstream's output.
    for (const n of done.nodes.slice(1)) assert.equal(n.attempts.length, 1);
  });

  it('offers nothing to a store that says it hands off none, and runs the chain on claims', async () => {
    class Declining extends Watched {
      override readonly handsOff = false;
    }
    const repo = new Declining({ leaseCheckIntervalMs: 20 });
    const { pool } = testPool(
      cleanup,
      { runtimes: [runtime('plain', async () => ({ conclusion: 'SUCCESS' }))] },
      repo,
    );
    await pool.start();
    const run = await repo.start(chain(3, 'plain'));
    assert.equal((await completed(repo, run.id)).conclusion, 'SUCCESS');
    assert.equal(repo.offers.length, 3, 'three finishes');
    assert.deepEqual(repo.offers, [undefined, undefined, undefined], 'none carried an offer');
    assert.equal(repo.claims, 3, 'each node claimed');
    assert.equal(pool.counters.handedOff, 0);
  });

  it('offers nothing while it has no room: slots busy and claim-ahead off', async () => {
    const repo = new Watched({ leaseCheckIntervalMs: 20 });
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const rt = runtime('busy', async (ctx) => {
      if (ctx.node.spec.name === 'slow') await held;
      return { conclusion: 'SUCCESS' };
    });
    const { pool } = testPool(cleanup, { runtimes: [rt], concurrency: 2, claimAhead: 0 }, repo);
    await pool.start();
    const run = await repo.start(
      spec(
        [
          { name: 'slow', runtime: 'busy' },
          { name: 'a', runtime: 'busy' },
          { name: 'b', runtime: 'busy' },
        ],
        [['a', 'b']],
      ),
    );
    await until(() => repo.offers.length >= 1, "a's finish");
    // One slot holds `slow`; `a`'s slot is free again when it finishes: one place, b is handed off.
    assert.equal(repo.offers[0]!.agentIds.length, 1);
    release();
    await completed(repo, run.id);
    assert.equal(pool.counters.handedOff, 1);
  });

  it('gives handed-off nodes that have not started back on stop', async () => {
    const repo = new Watched({ leaseCheckIntervalMs: 20 });
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    const rt = runtime('fan', async (ctx) => {
      if (ctx.node.spec.name !== 'root') await held;
      return { conclusion: 'SUCCESS' };
    });
    const { pool } = testPool(cleanup, { runtimes: [rt], concurrency: 1, claimAhead: 4 }, repo);
    await pool.start();
    const fan = spec(
      ['root', 'x', 'y', 'z'].map((name) => ({ name, runtime: 'fan' })),
      [
        ['root', 'x'],
        ['root', 'y'],
        ['root', 'z'],
      ],
    );
    const run = await repo.start(fan);
    await until(() => pool.counters.handedOff === 3, 'three handed off');
    const stopping = pool.stop({ graceMs: 5_000 });
    await until(() => pool.counters.released === 2, 'the two not started given back');
    release();
    await stopping;
    const state = await repo.inspect(run.id);
    const ready = state.nodes.filter((n) => n.status === 'READY');
    assert.equal(ready.length, 2);
    for (const n of ready) assert.deepEqual(n.attempts, [], 'no attempt recorded');
  });

  it('keeps its claim-ahead queue within three times its bound plus its slots, however many finishes are on their way', async () => {
    /** A store whose finishes take a round trip, so many are on their way at once. */
    class Distant extends Watched {
      override async finish(request: FinishRequest): Promise<FinishResult> {
        await new Promise((r) => setTimeout(r, 5));
        return super.finish(request);
      }
    }
    const repo = new Distant({ leaseCheckIntervalMs: 20 });
    const concurrency = 4;
    const claimAhead = 4;
    const { pool } = testPool(
      cleanup,
      { runtimes: [runtime('fan', async () => ({ conclusion: 'SUCCESS' }))], concurrency, claimAhead },
      repo,
    );
    // The queue, read where nodes join it.
    const ahead = (pool as unknown as { ahead: { queue: unknown[]; handedOff: (...a: unknown[]) => void } })
      .ahead;
    let most = 0;
    const join = ahead.handedOff.bind(ahead);
    ahead.handedOff = (...args: unknown[]) => {
      join(...args);
      most = Math.max(most, ahead.queue.length);
    };
    await pool.start();
    // Runs of a root over 8 nodes over 8 leaves each: every finish makes up to 8 nodes READY.
    const names = ['root'];
    const edges: [string, string][] = [];
    for (let m = 0; m < 8; m++) {
      names.push(`m${m}`);
      edges.push(['root', `m${m}`]);
      for (let l = 0; l < 8; l++) {
        names.push(`m${m}l${l}`);
        edges.push([`m${m}`, `m${m}l${l}`]);
      }
    }
    const runs = [];
    for (let i = 0; i < 10; i++)
      runs.push(
        await repo.start(
          spec(
            names.map((name) => ({ name, runtime: 'fan' })),
            edges,
          ),
        ),
      );
    for (const run of runs) assert.equal((await completed(repo, run.id, 60_000)).conclusion, 'SUCCESS');
    assert.ok(pool.counters.handedOff >= 20, `${pool.counters.handedOff} handed off`);
    // Offers out and the queue stay within 2 × bound + slots; claims ahead (up to the bound) come on top.
    assert.ok(most <= 3 * claimAhead + concurrency, `the queue held ${most} at most`);
  });

  it('gives back what a finish on its way hands off while the pool stops, before its lease goes', async () => {
    let releasing = 0;
    let finishing!: () => void;
    const finishStarted = new Promise<void>((r) => {
      finishing = r;
    });
    let letFinish!: () => void;
    const finishMayGo = new Promise<void>((r) => {
      letFinish = r;
    });
    /** A store whose first finish waits to be let go, and whose releases are slower than a lease's revocation. */
    class Held extends Watched {
      override async finish(request: FinishRequest): Promise<FinishResult> {
        finishing();
        await finishMayGo;
        return super.finish(request);
      }
      override async release(claims: ClaimRef[]): Promise<boolean[]> {
        releasing++;
        await new Promise((r) => setTimeout(r, 50));
        return super.release(claims);
      }
    }
    const repo = new Held({ leaseCheckIntervalMs: 20 });
    const { pool } = testPool(
      cleanup,
      { runtimes: [runtime('fan', async () => ({ conclusion: 'SUCCESS' }))], concurrency: 1, claimAhead: 4 },
      repo,
    );
    await pool.start();
    const run = await repo.start(
      spec(
        ['root', 'x', 'y', 'z'].map((name) => ({ name, runtime: 'fan' })),
        ['x', 'y', 'z'].map((d) => ['root', d] as [string, string]),
      ),
    );
    await finishStarted;
    const stopped = pool.stop({ graceMs: 5_000 });
    letFinish();
    await stopped;
    assert.equal(pool.counters.handedOff, 3, "root's finish handed off its dependents");
    assert.ok(releasing >= 1);
    assert.equal(pool.counters.released, 3, 'and they were given back before stop() returned');
    const left = await repo.inspect(run.id);
    assert.deepEqual(
      left.nodes.filter((n) => n.spec.name !== 'root').map((n) => [n.status, n.attempts.length]),
      [
        ['READY', 0],
        ['READY', 0],
        ['READY', 0],
      ],
      'READY again, no attempt: not orphaned by the revoked lease',
    );
  });
});
