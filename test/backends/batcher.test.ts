/** The Batcher shared by the PostgreSQL and etcd backends: what each call gets back, alone or batched. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher } from '../../src/backends/batcher.js';

describe('Batcher', () => {
  it('one batch in flight; calls arriving meanwhile go together; each gets its own answer', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = new Batcher<number, string>({ maxCalls: 10 }, async (calls) => {
      batches.push(calls);
      if (batches.length === 1) await gate;
      return calls.map((c) => `answer ${c}`);
    });
    const first = b.submit(0);
    const rest = [1, 2, 3].map((n) => b.submit(n));
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(batches, [[0]], 'the others wait for the batch in flight');
    release();
    assert.deepEqual(await Promise.all([first, ...rest]), ['answer 0', 'answer 1', 'answer 2', 'answer 3']);
    assert.deepEqual(batches, [[0], [1, 2, 3]]);
  });

  it('splits on count, weight and key; a call heavier than the limit still goes, alone', async () => {
    const batches: string[][] = [];
    let hold = true;
    const b = new Batcher<string, string>(
      { maxCalls: 3, maxWeight: 10, weight: (c) => c.length, key: (c) => c[0]! },
      async (calls) => {
        while (hold) await new Promise((r) => setTimeout(r, 5));
        batches.push(calls);
        return calls;
      },
    );
    const calls = ['a', 'b1', 'b2', 'c', 'd', 'eeeeeeeeeeeeeeee', 'f'];
    const blocker = b.submit('z');
    const all = calls.map((c) => b.submit(c));
    hold = false;
    await blocker;
    assert.deepEqual(await Promise.all(all), calls);
    // A call that does not fit waits for the next batch; later ones that fit go ahead of it.
    assert.deepEqual(batches, [['z'], ['a', 'b1', 'c'], ['b2', 'd', 'f'], ['eeeeeeeeeeeeeeee']]);
  });

  it('calls naming several keys share a batch only when no key is in common', async () => {
    const batches: string[][] = [];
    let hold = true;
    // A call 'x:yz' writes x and counts down y and z (as an etcd finish does its dependents).
    const b = new Batcher<string, string>(
      { maxCalls: 10, key: (c) => c.replace(':', '').split('') },
      async (calls) => {
        while (hold) await new Promise((r) => setTimeout(r, 5));
        batches.push(calls);
        return calls;
      },
    );
    const blocker = b.submit('0:');
    const calls = ['a:', 'b:', 'c:d', 'e:d', 'f:g', 'a:'];
    const all = calls.map((c) => b.submit(c));
    hold = false;
    await blocker;
    assert.deepEqual(await Promise.all(all), calls);
    assert.deepEqual(batches, [['0:'], ['a:', 'b:', 'c:d', 'f:g'], ['e:d', 'a:']]);
  });

  it('a failed batch fails its calls; with isolate, each call is sent again alone and only the bad one fails', async () => {
    const plain = new Batcher<number, number>({ maxCalls: 10 }, async (calls) => {
      if (calls.includes(13)) throw new Error('store refused 13');
      return calls;
    });
    const isolating = new Batcher<number, number>(
      { maxCalls: 10, isolate: (e) => (e as Error).message.startsWith('store refused') },
      async (calls) => {
        if (calls.includes(13)) throw new Error('store refused 13');
        return calls;
      },
    );
    for (const [batcher, expected] of [
      [plain, ['rejected', 'rejected', 'rejected']],
      [isolating, ['fulfilled', 'rejected', 'fulfilled']],
    ] as const) {
      const blocker = batcher.submit(0);
      const results = await Promise.allSettled([12, 13, 14].map((n) => batcher.submit(n)));
      await blocker;
      assert.deepEqual(
        results.map((r) => r.status),
        expected,
      );
    }
  });

  it('alongside: under light load a call goes beside the small batch in flight; a busy batcher still waits, and never flies a key twice', async () => {
    const batches: string[][] = [];
    const gates: (() => void)[] = [];
    const b = new Batcher<string, string>(
      { maxCalls: 10, alongside: 1, key: (c) => c[0]! },
      async (calls) => {
        batches.push(calls);
        await new Promise<void>((r) => gates.push(r));
        return calls;
      },
    );
    const a = b.submit('a1');
    const c = b.submit('c');
    assert.deepEqual(batches, [['a1'], ['c']], 'the second call went at once, beside the first');
    const rest = ['a2', 'd', 'e'].map((x) => b.submit(x));
    assert.equal(batches.length, 2, 'two batches in flight: the rest wait');
    gates.shift()!();
    assert.equal(await a, 'a1');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches[2], ['a2', 'd', 'e'], 'they go together once a batch lands');
    // That batch holds 3 calls (more than `alongside`): later calls wait for it, batching as before.
    gates.shift()!();
    assert.equal(await c, 'c');
    await new Promise((r) => setImmediate(r));
    const f = b.submit('f');
    assert.equal(batches.length, 3, 'a busy batch in flight: no second one beside it');
    gates.shift()!();
    assert.deepEqual(await Promise.all(rest), ['a2', 'd', 'e']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches[3], ['f']);
    gates.shift()!();
    assert.equal(await f, 'f');

    // A call whose key is in flight does not go beside it, even under light load.
    const g = b.submit('g1');
    const g2 = b.submit('g2');
    assert.deepEqual(batches.slice(4), [['g1']]);
    gates.shift()!();
    assert.equal(await g, 'g1');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches.slice(4), [['g1'], ['g2']]);
    gates.shift()!();
    assert.equal(await g2, 'g2');
  });

  it('alongsideAfterMs: calls in quick succession share a batch; one that finds a slow batch in flight goes beside it', async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const b = new Batcher<number, number>(
      { maxCalls: 10, alongside: 2, alongsideAfterMs: 30 },
      async (calls) => {
        batches.push(calls);
        if (batches.length === 1) await gate;
        return calls;
      },
    );
    const first = b.submit(1);
    const quick = b.submit(2);
    assert.deepEqual(batches, [[1]], 'the batch in flight is young: the call waits to share the next');
    const t0 = performance.now();
    while (performance.now() - t0 < 40) await new Promise((r) => setTimeout(r, 10));
    const late = b.submit(3);
    assert.deepEqual(batches, [[1], [2, 3]], 'the batch in flight is slow: the queue goes beside it');
    release();
    assert.deepEqual(await Promise.all([first, quick, late]), [1, 2, 3]);
  });
});
