/**
 * READY and orphaned nodes waiting for a claimer (the agent pool, the agent
 * API's long-polls): first in first out, one per node, through any number of
 * takes and additions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type NodeEvent, PendingEvents } from '../src/protocol/index.js';

const ready = (node: string, runId = 'r'): NodeEvent => ({ type: 'NODE_READY', runId, node, runtime: 'x' });
const orphaned = (node: string, runId = 'r'): NodeEvent => ({ ...ready(node, runId), type: 'NODE_ORPHANED' });

describe('PendingEvents', () => {
  it('gives events back in the order they came, one per node', () => {
    const q = new PendingEvents();
    q.add(ready('a'));
    q.add(ready('b'));
    q.add(ready('a', 'other run'));
    q.add(orphaned('a'));
    assert.equal(q.size, 3, 'a second event about a node adds nothing; the same name in another run does');
    assert.deepEqual(
      [q.take(), q.take(), q.take()].map((e) => [e?.runId, e?.node, e?.type]),
      [
        ['r', 'a', 'NODE_READY'],
        ['r', 'b', 'NODE_READY'],
        ['other run', 'a', 'NODE_READY'],
      ],
    );
    assert.equal(q.take(), undefined);
    assert.equal(q.size, 0);
  });

  it('set replaces the event about a node where it stands', () => {
    const q = new PendingEvents();
    q.add(ready('a'));
    q.add(ready('b'));
    q.set(orphaned('a'));
    assert.deepEqual(
      [q.take(), q.take()].map((e) => [e?.node, e?.type]),
      [
        ['a', 'NODE_ORPHANED'],
        ['b', 'NODE_READY'],
      ],
    );
  });

  it('a node taken and added again goes last', () => {
    const q = new PendingEvents();
    for (const k of ['a', 'b', 'c']) q.add(ready(k));
    assert.equal(q.take()?.node, 'a');
    q.set(ready('a'));
    assert.deepEqual(
      [q.take(), q.take(), q.take(), q.take()].map((e) => e?.node),
      ['b', 'c', 'a', undefined],
    );
  });

  it('clear empties it; it fills again from scratch', () => {
    const q = new PendingEvents();
    for (const k of ['a', 'b']) q.add(ready(k));
    q.clear();
    assert.equal(q.size, 0);
    assert.equal(q.take(), undefined);
    q.add(ready('b'));
    assert.equal(q.take()?.node, 'b');
  });

  it('with a bound: full at it, room once takes bring it down to half, or on clear', async () => {
    const q = new PendingEvents(4);
    for (const k of ['a', 'b', 'c']) q.add(ready(k));
    assert.equal(q.full(), false);
    await q.room(); // not full: at once
    q.add(ready('d'));
    assert.equal(q.full(), true);
    let roomy = false;
    void q.room().then(() => {
      roomy = true;
    });
    q.take();
    await Promise.resolve();
    assert.equal(roomy, false, 'three still wait');
    q.take();
    await Promise.resolve();
    assert.equal(roomy, true, 'two: half the bound');
    q.add(ready('e'));
    q.add(ready('f'));
    assert.equal(q.full(), true);
    const cleared = q.room();
    q.clear();
    await cleared;
  });

  it('keeps order through a backlog of 100,000 taken while more arrive', () => {
    const q = new PendingEvents();
    const n = 100_000;
    for (let i = 0; i < n; i++) q.add(ready(`k${i}`));
    const taken: string[] = [];
    // Two taken for each one added, as slots free up while a subscription keeps delivering.
    for (let i = n; i < n + n / 2; i++) {
      q.add(ready(`k${i}`));
      taken.push(q.take()!.node, q.take()!.node);
    }
    assert.equal(q.size, n / 2);
    for (let e = q.take(); e; e = q.take()) taken.push(e.node);
    assert.equal(taken.length, n + n / 2);
    assert.ok(
      taken.every((k, i) => k === `k${i}`),
      'every event once, in arrival order',
    );
  });
});
