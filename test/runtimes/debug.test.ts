import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { debugRuntime, parseChances, pickOutcome } from '../../src/runtimes/debug.js';
import { seededRandom } from '../../src/runtimes/random.js';
import { args, context, text } from './context.js';

describe('debug runtime', () => {
  it('ends with the conclusion asked for (success by default)', async () => {
    const debug = debugRuntime();
    assert.deepEqual(await debug.run(context('debug')), { conclusion: 'SUCCESS', output: 'debug: success' });
    for (const [c, want] of [
      ['success', 'SUCCESS'],
      ['fail', 'FAIL'],
      ['error', 'ERROR'],
    ] as const) {
      const r = await debug.run(context('debug', args('debug', { conclusion: c })));
      assert.equal(r.conclusion, want);
      assert.equal(text(r.output), `debug: ${c}`);
    }
  });

  it('panic throws, as a broken runtime would', async () => {
    await assert.rejects(
      debugRuntime().run(context('debug', args('debug', { conclusion: 'panic' }))),
      /debug: panic/,
    );
  });

  it('an unknown conclusion or malformed chance is ERROR naming the argument', async () => {
    const debug = debugRuntime();
    const c = await debug.run(context('debug', args('debug', { conclusion: 'maybe' })));
    assert.equal(c.conclusion, 'ERROR');
    assert.match(text(c.output), /argument "conclusion".*"maybe" is not one of/);
    for (const bad of ['half fail', '0.5 explode', '1.5 fail']) {
      const r = await debug.run(context('debug', args('debug', { chances: [bad] })));
      assert.equal(r.conclusion, 'ERROR', bad);
      assert.match(text(r.output), /argument "chances"/);
    }
    const over = await debug.run(context('debug', args('debug', { chances: ['0.7 fail', '0.6 error'] })));
    assert.match(text(over.output), /add up to 1.3, more than 1/);
  });

  it('sleeps, and an abort interrupts the sleep with ERROR', async () => {
    const debug = debugRuntime();
    const r = await debug.run(context('debug', args('debug', { sleep: '50ms' })));
    assert.deepEqual(r, { conclusion: 'SUCCESS', output: 'debug: success (slept 50ms)' });
    const ac = new AbortController();
    const pending = debug.run(context('debug', args('debug', { sleep: '1h' }), { signal: ac.signal }));
    ac.abort(new Error('timed out'));
    const aborted = await pending;
    assert.equal(aborted.conclusion, 'ERROR');
    assert.match(text(aborted.output), /interrupted while sleeping 1h: timed out/);
  });

  it('a sleep past 2^31-1 ms (about 24.8 days) does not end at once', async () => {
    const ac = new AbortController();
    let ended = false;
    const pending = debugRuntime()
      .run(context('debug', args('debug', { sleep: '600h' }), { signal: ac.signal }))
      .finally(() => {
        ended = true;
      });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(ended, false, 'still sleeping');
    ac.abort(new Error('enough'));
    assert.match(text((await pending).output), /interrupted while sleeping 600h: enough/);
  });

  it('chances follow the seeded generator draw by draw', async () => {
    const debug = debugRuntime({ random: seededRandom(42) });
    const replay = seededRandom(42);
    const chances = ['0.3 fail', '0.2 error', '0.1 panic'];
    const seen: Record<string, number> = {};
    for (let i = 0; i < 400; i++) {
      const draw = replay();
      const want = draw < 0.3 ? 'FAIL' : draw < 0.5 ? 'ERROR' : draw < 0.6 ? 'PANIC' : 'SUCCESS';
      let got: string;
      try {
        got = (await debug.run(context('debug', args('debug', { chances })))).conclusion;
      } catch {
        got = 'PANIC';
      }
      assert.equal(got, want, `draw ${i} (${draw})`);
      seen[got] = (seen[got] ?? 0) + 1;
    }
    // Every outcome occurs, roughly in proportion: a generator stuck on one value would fail here.
    assert.ok(
      seen.FAIL! > 80 && seen.ERROR! > 40 && seen.PANIC! > 15 && seen.SUCCESS! > 120,
      JSON.stringify(seen),
    );
  });

  it('the output says what was drawn', async () => {
    const r = await debugRuntime({ random: () => 0.25 }).run(
      context('debug', args('debug', { chances: ['0.5 fail'] })),
    );
    assert.deepEqual(r, { conclusion: 'FAIL', output: 'debug: fail (drew 0.2500 against 0.5 fail)' });
  });

  it('parses and picks chances in order', () => {
    const chances = parseChances(['0.5 fail', '.25 error']);
    assert.deepEqual(chances, [
      { probability: 0.5, outcome: 'fail' },
      { probability: 0.25, outcome: 'error' },
    ]);
    assert.equal(pickOutcome(0.49, chances, 'success'), 'fail');
    assert.equal(pickOutcome(0.5, chances, 'success'), 'error');
    assert.equal(pickOutcome(0.75, chances, 'success'), 'success');
  });

  it('seededRandom is deterministic per seed and within [0, 1)', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(
      xs,
      Array.from({ length: 1000 }, () => b()),
    );
    assert.ok(xs.every((x) => x >= 0 && x < 1));
    assert.notDeepEqual(xs.slice(0, 5), Array.from({ length: 5 }, seededRandom(8)));
  });
});
