/** The agent's lazily made AbortController behaves like a real one, whenever the signal is first read. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LazyAbortController } from '../../src/agent/lazy-abort.js';

describe('LazyAbortController', () => {
  it('a signal read before the abort sees it, with its reason, through its event', () => {
    const c = new LazyAbortController();
    const signal = c.signal;
    let reason: unknown;
    signal.addEventListener('abort', () => {
      reason = signal.reason;
    });
    assert.equal(signal.aborted, false);
    const why = new Error('timed out');
    c.abort(why);
    assert.equal(signal.aborted, true);
    assert.equal(reason, why);
    assert.equal(c.signal, signal, 'one signal for the controller’s life');
  });

  it('a signal first read after the abort starts out aborted, with the first reason', () => {
    const c = new LazyAbortController();
    const first = new Error('shutting down');
    c.abort(first);
    c.abort(new Error('later'));
    assert.equal(c.aborted, true);
    assert.equal(c.signal.aborted, true);
    assert.equal(c.signal.reason, first);
  });

  it('never aborted: a live signal', () => {
    const c = new LazyAbortController();
    assert.equal(c.aborted, false);
    assert.equal(c.signal.aborted, false);
  });
});
