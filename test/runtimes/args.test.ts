import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArgumentError, arg, resolveArgs } from '../../src/runtimes/args.js';
import { defineRuntime } from '../../src/runtimes/define.js';
import { formatDuration, parseDuration } from '../../src/runtimes/duration.js';
import { args, context, nodeState, text } from './context.js';

const SPECS = {
  name: arg.string(),
  tags: arg.strings({ optional: true }),
  count: arg.int({ default: 3 }),
  wait: arg.duration({ optional: true }),
  cfg: arg.json<{ a: number }>({ optional: true }),
  loud: arg.bool({ default: false }),
};

describe('typed arguments', () => {
  it('reads adagio.arguments.<runtime>.<arg> and applies defaults', () => {
    const node = nodeState(
      'greet',
      args('greet', { name: 'ada', tags: ['x', 'y'], wait: '1.5s', cfg: '{"a":1}' }),
    );
    const v = resolveArgs('greet', SPECS, node);
    assert.deepEqual(v, { name: 'ada', tags: ['x', 'y'], count: 3, wait: 1500, cfg: { a: 1 }, loud: false });
  });

  it('accepts the older adagio.runtime.<runtime>.<arg> spelling, the new one winning', () => {
    const old = nodeState('greet', {
      'adagio.runtime.greet.name': ['old'],
      'adagio.runtime.greet.count': ['7'],
    });
    assert.equal(resolveArgs('greet', SPECS, old).name, 'old');
    assert.equal(resolveArgs('greet', SPECS, old).count, 7);
    const both = nodeState('greet', {
      'adagio.runtime.greet.name': ['old'],
      'adagio.arguments.greet.name': ['new'],
    });
    assert.equal(resolveArgs('greet', SPECS, both).name, 'new');
  });

  it('maps an upstream output with adagio.inputs.<runtime>.<arg>', () => {
    const node = nodeState(
      'greet',
      {
        'adagio.inputs.greet.name': ['up'],
        'adagio.inputs.greet.tags': ['list'],
        'adagio.inputs.greet.count': ['num'],
      },
      { up: 'grace\n', list: 'a\nb\n', num: '  42\n' },
    );
    const v = resolveArgs('greet', SPECS, node);
    assert.equal(v.name, 'grace', 'a single trailing newline is dropped');
    assert.deepEqual(v.tags, ['a', 'b'], 'one value per line');
    assert.equal(v.count, 42);
  });

  it('a missing required argument is an error naming it and the keys that set it', () => {
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet')),
      (e: unknown) =>
        e instanceof ArgumentError &&
        e.argument === 'name' &&
        /missing required argument "name" of runtime "greet"/.test(e.message) &&
        e.message.includes('adagio.arguments.greet.name') &&
        e.message.includes('adagio.inputs.greet.name'),
    );
  });

  it('a bad int or duration is an error naming the argument, its source and the value', () => {
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: 'a', count: 'three' }))),
      /argument "count" of runtime "greet" \(from metadata "adagio.arguments.greet.count"\): "three" is not a whole number/,
    );
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: 'a', count: '1.5' }))),
      /"1.5" is not a whole number/,
    );
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: 'a', wait: '10' }))),
      /argument "wait" .*"10" is not a duration/,
    );
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: 'a', cfg: '{' }))),
      /argument "cfg" .*not valid JSON/,
    );
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: ['a', 'b'] }))),
      /argument "name" .*expects one value, got 2/,
    );
  });

  it('an unknown argument under the runtime prefix is named, not ignored', () => {
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', args('greet', { name: 'a', nmae: 'b' }))),
      /unknown argument "nmae".*takes "name", "tags"/,
    );
  });

  it('an input from an upstream node that did not succeed: a required argument is an error naming it, an optional one unset', () => {
    // A start refuses an input key naming a node that is not upstream (rule 1), so no input means the upstream node
    // did not succeed and a trigger (all_done...) ran this node below it (rule 14).
    assert.throws(
      () => resolveArgs('greet', SPECS, nodeState('greet', { 'adagio.inputs.greet.name': ['build'] })),
      /mapped to the output of node "build", which did not succeed/,
    );
    const values = resolveArgs(
      'greet',
      SPECS,
      nodeState('greet', { ...args('greet', { name: 'a' }), 'adagio.inputs.greet.tags': ['build'] }),
    );
    assert.deepEqual(values.tags, undefined, 'optional: unset');
  });

  it('a defineRuntime runtime turns argument problems into an ERROR attempt', async () => {
    let called = false;
    const rt = defineRuntime({
      name: 'greet',
      args: { name: arg.string(), times: arg.int({ default: 1 }) },
      run: (a) => {
        called = true;
        return { conclusion: 'SUCCESS', output: `hello ${a.name}`.repeat(a.times) };
      },
    });
    const missing = await rt.run(context('greet'));
    assert.equal(missing.conclusion, 'ERROR');
    assert.match(text(missing.output), /missing required argument "name"/);
    const bad = await rt.run(context('greet', args('greet', { name: 'x', times: 'lots' })));
    assert.equal(bad.conclusion, 'ERROR');
    assert.match(text(bad.output), /argument "times".*"lots" is not a whole number/);
    assert.equal(called, false);
    const ok = await rt.run(context('greet', args('greet', { name: 'bo', times: '2' })));
    assert.deepEqual(ok, { conclusion: 'SUCCESS', output: 'hello bohello bo' });
  });

  it('a bad default fails at definition time', () => {
    assert.throws(() => arg.duration({ default: 'soon' }), /not a duration/);
  });
});

describe('durations', () => {
  it('parses units and sums', () => {
    assert.equal(parseDuration('100ms'), 100);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('0'), 0);
  });
  it('refuses bare numbers, unknown units and junk', () => {
    for (const bad of ['10', '5d', 's', '', '1.5', '-1s', '1s junk'])
      assert.throws(() => parseDuration(bad), bad);
  });
  it('formats', () => {
    assert.equal(formatDuration(250), '250ms');
    assert.equal(formatDuration(1500), '1.5s');
    assert.equal(formatDuration(5_400_000), '1h30m');
  });
});
