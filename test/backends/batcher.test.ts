/** The Batcher shared by the PostgreSQL and etcd backends: what each call gets back, alone or batched. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, type BatcherOptions } from '../../src/backends/batcher.js';

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

  it('busyWindowMs: idle, a call goes at once; busy, the next batch waits for more calls until full', async () => {
    // A window far longer than the test: only the calls filling a batch end the wait.
    const { b, batches, release } = gated({ maxCalls: 2, busyWindowMs: 60_000 });
    const first = b.submit(0);
    assert.deepEqual(batches, [[0]], 'idle: sent at once, no window');
    const second = b.submit(1);
    release();
    await first;
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batches, [[0]], 'busy: call 1 waits in the window for company');
    const third = b.submit(2);
    assert.deepEqual(await Promise.all([second, third]), [1, 2]);
    assert.deepEqual(batches, [[0], [1, 2]], 'two calls fill a batch: the wait ends');
    // Idle again (the last batch ended long enough ago): a call goes at once.
    await new Promise((r) => setTimeout(r, 50));
    const fourth = b.submit(3);
    assert.deepEqual(batches, [[0], [1, 2], [3]]);
    assert.equal(await fourth, 3);
  });

  it('busyWindowMs: calls weighing maxWeight end the wait too', async () => {
    const { b, batches, release } = gated({
      maxCalls: 100,
      maxWeight: 5,
      weight: (c) => c,
      busyWindowMs: 60_000,
    });
    const first = b.submit(1);
    const light = b.submit(2);
    release();
    await first;
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(batches, [[1]], 'weight 2 of 5: waiting');
    const heavy = b.submit(3);
    assert.deepEqual(await Promise.all([light, heavy]), [2, 3]);
    assert.deepEqual(batches, [[1], [2, 3]], 'weight 5 of 5: full, the wait ends');
  });
});

/** A Batcher echoing its calls whose first batch stays in flight until `release()`; `batches` records each batch. */
function gated(options: BatcherOptions<number>) {
  const batches: number[][] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const b = new Batcher<number, number>(options, async (calls) => {
    batches.push(calls);
    if (batches.length === 1) await gate;
    return calls;
  });
  return { b, batches, release };
}
