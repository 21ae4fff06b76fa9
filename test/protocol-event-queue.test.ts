/**
 * EventQueue.drained: a producer reading a large source page by page waits
 * for its consumer to take most of the last page, and is never left waiting
 * by a queue that ends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventQueue } from '../src/protocol/index.js';

const tick = () => new Promise((r) => setTimeout(r, 10));

describe('EventQueue.drained', () => {
  it('resolves once the consumer has taken all but n of the queued items', async () => {
    const q = new EventQueue<number>();
    for (let i = 0; i < 10; i++) q.push(i);
    assert.equal(q.queued, 10);
    let done = false;
    void q.drained(4).then(() => {
      done = true;
    });
    const it = q[Symbol.asyncIterator]();
    for (let i = 0; i < 5; i++) assert.equal((await it.next()).value, i);
    await tick();
    assert.equal(done, false, 'five still queued');
    await it.next();
    await tick();
    assert.equal(done, true, 'four left');
    assert.equal(q.queued, 4);
    await q.drained(4); // already there: at once
  });

  it('several producers each wait for their own mark', async () => {
    const q = new EventQueue<number>();
    for (let i = 0; i < 4; i++) q.push(i);
    const done: number[] = [];
    void q.drained(2).then(() => done.push(2));
    void q.drained(0).then(() => done.push(0));
    const it = q[Symbol.asyncIterator]();
    await it.next();
    await it.next();
    await tick();
    assert.deepEqual(done, [2]);
    await it.next();
    await it.next();
    await tick();
    assert.deepEqual(done, [2, 0]);
  });

  it('resolves when the queue is closed or its signal aborts', async () => {
    const closed = new EventQueue<number>();
    closed.push(1);
    const waiting = closed.drained(0);
    closed.close();
    await waiting;
    const ac = new AbortController();
    const aborted = new EventQueue<number>(ac.signal);
    aborted.push(1);
    const waiting2 = aborted.drained(0);
    ac.abort();
    await waiting2;
    await aborted.drained(0); // a closed queue never makes a producer wait
  });

  it("resolves when the producer's own signal aborts, and forgets that producer", async () => {
    const q = new EventQueue<number>();
    q.push(1);
    q.push(2);
    const producer = new AbortController();
    let stopped = false;
    void q.drained(0, producer.signal).then(() => {
      stopped = true;
    });
    let other = false;
    void q.drained(1).then(() => {
      other = true;
    });
    producer.abort();
    await tick();
    assert.equal(stopped, true, 'the stopped producer waits no more');
    assert.equal(other, false, 'another producer still waits for its mark');
    assert.equal(q.isClosed, false, 'the queue goes on');
    await q[Symbol.asyncIterator]().next();
    await tick();
    assert.equal(other, true);
    await q.drained(0, producer.signal); // an aborted signal never waits
  });
});
