import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { graphFromJson } from '../../src/model/wire.js';
import { InvalidArgumentError, InvalidGraphError } from '../../src/protocol/errors.js';
import { arg, resolveArgs } from '../../src/runtimes/args.js';
import { defineRuntime } from '../../src/runtimes/define.js';
import { parseDuration } from '../../src/runtimes/duration.js';
import { EXEC_ARGS } from '../../src/runtimes/exec.js';
import { debug, exec, task, workflow } from '../../src/workflow/index.js';

describe('workflow builder', () => {
  it('produces the graph spec: nodes, arguments, retries, edges, input mappings', () => {
    const wf = workflow();
    const fetch = wf
      .node('fetch', exec({ command: 'curl', args: ['-s', 'http://127.0.0.1/x'], timeout: '30s' }))
      .retry({ fail: 3, error: 2 });
    const count = wf.node('count', exec({ command: 'wc', args: ['-c'] })).argFrom('stdin', fetch);
    wf.node('report', debug({ conclusion: 'success', sleep: 250 }))
      .dependsOn(count, fetch)
      .argFrom('chances', 'count');
    const spec = wf.build();
    assert.deepEqual(spec, {
      nodes: [
        {
          name: 'fetch',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': ['curl'],
            'adagio.arguments.exec.args': ['-s', 'http://127.0.0.1/x'],
            'adagio.arguments.exec.timeout': ['30s'],
          },
          retry: { fail: { maxAttempts: 3 }, error: { maxAttempts: 2 } },
        },
        {
          name: 'count',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': ['wc'],
            'adagio.arguments.exec.args': ['-c'],
            'adagio.inputs.exec.stdin': ['fetch'],
          },
          retry: {},
        },
        {
          name: 'report',
          runtime: 'debug',
          metadata: {
            'adagio.arguments.debug.conclusion': ['success'],
            'adagio.arguments.debug.sleep': ['250ms'],
            'adagio.inputs.debug.chances': ['count'],
          },
          retry: {},
        },
      ],
      edges: [
        { source: 'fetch', destination: 'count' },
        { source: 'count', destination: 'report' },
        { source: 'fetch', destination: 'report' },
      ],
    });
  });

  it('writes retry backoffs, node timeouts and the run deadline, and round-trips them', () => {
    const wf = workflow().deadline('2h');
    wf.node('fetch', debug({ conclusion: 'success' }))
      .retry({ fail: 5, error: 2, backoff: { initial: '1s', factor: 2, max: '1m', jitter: 0.2 } })
      .timeout('30m');
    wf.node('plain', debug({ conclusion: 'success' }));
    const spec = wf.build();
    assert.equal(spec.deadline, '2h');
    const [fetch, plain] = spec.nodes;
    assert.equal(fetch!.timeout, '30m');
    assert.deepEqual(fetch!.retry.fail, {
      maxAttempts: 5,
      backoff: { initial: '1s', factor: 2, max: '1m', jitter: 0.2 },
    });
    assert.equal(fetch!.retry.error?.backoff?.initial, '1s');
    assert.equal(plain!.timeout, undefined);
    assert.deepEqual(graphFromJson(wf.toJSON()), spec);
  });

  it('a bad backoff, timeout or deadline is a build problem naming it', () => {
    const wf = workflow().deadline('-1h');
    wf.node('a', debug({ conclusion: 'success' }))
      .retry({ fail: 2, backoff: { initial: '1s', factor: 0.5 } })
      .timeout('soon');
    assert.throws(
      () => wf.build(),
      (e: unknown) =>
        e instanceof InvalidGraphError &&
        /factor must be 1 or more/.test(e.message) &&
        /timeout "soon" is not a duration/.test(e.message) &&
        /graph deadline "-1h" is not a duration/.test(e.message),
    );
  });

  it('round-trips through the canonical JSON form', () => {
    const wf = workflow();
    const a = wf.node('a', debug());
    wf.node('b', task('custom', { n: 3, flags: ['x', 'y'], cfg: { k: 1 } }))
      .dependsOn(a)
      .meta('team', 'core');
    const spec = wf.build();
    assert.deepEqual(graphFromJson(wf.toJSON()), spec);
    assert.deepEqual(spec.nodes[1]!.metadata, {
      'adagio.arguments.custom.n': ['3'],
      'adagio.arguments.custom.flags': ['x', 'y'],
      'adagio.arguments.custom.cfg': ['{"k":1}'],
      team: ['core'],
    });
  });

  it('sets a trigger rule, which round-trips through JSON as "trigger"', () => {
    const wf = workflow();
    const a = wf.node('a', debug());
    wf.node('cleanup', debug()).dependsOn(a).trigger('all_done');
    wf.node('onfail', debug()).dependsOn(a).trigger('one_failed');
    const spec = wf.build();
    assert.equal(spec.nodes[0]!.trigger, undefined, 'the default is left out');
    assert.equal(spec.nodes[1]!.trigger, 'all_done');
    const json = wf.toJSON() as { nodes: { trigger?: string }[] };
    assert.equal(json.nodes[2]!.trigger, 'one_failed');
    assert.deepEqual(graphFromJson(json), spec);
  });

  it('an invalid graph is rejected with every problem named', () => {
    const wf = workflow();
    const a = wf.node('a', debug());
    const b = wf.node('b', debug()).dependsOn(a);
    a.dependsOn(b);
    wf.node('a', debug());
    wf.node('c', debug()).dependsOn('ghost');
    assert.throws(
      () => wf.build(),
      (e: unknown) =>
        e instanceof InvalidGraphError &&
        e.problems.some((p) => p.includes('duplicate node name "a"')) &&
        e.problems.some((p) => p.includes('unknown source node "ghost"')),
    );
    const cyclic = workflow();
    const x = cyclic.node('x', debug());
    const y = cyclic.node('y', debug()).dependsOn(x);
    x.dependsOn(y);
    assert.throws(() => cyclic.build(), /graph has a cycle: x -> y -> x|graph has a cycle: y -> x -> y/);
  });

  it('a required argument with neither a value nor argFrom is a build problem', () => {
    const wf = workflow();
    const up = wf.node('up', exec({ command: 'echo', args: ['ls'] }));
    wf.node('later', exec.partial({ args: ['-l'] }));
    assert.throws(() => wf.build(), /node "later": runtime "exec" needs argument "command"/);
    const ok = workflow();
    const up2 = ok.node('up', exec({ command: 'echo', args: ['ls'] }));
    ok.node('later', exec.partial({ args: ['-l'] })).argFrom('command', up2);
    assert.equal(ok.build().nodes[1]!.metadata['adagio.inputs.exec.command']![0], 'up');
    void up;
  });

  it('bad argument values are refused when the node is written', () => {
    assert.throws(() => debug({ sleep: 'soon' }), /argument "sleep" of runtime "debug".*not a duration/);
    assert.throws(
      () => exec({ command: 'x', args: 'not-a-list' as never }),
      /argument "args".*list of strings/,
    );
    assert.throws(() => exec({ command: 'x', nope: 1 } as never), /runtime "exec" has no argument "nope"/);
  });

  it('a defineRuntime runtime gets a typed builder call', () => {
    const greet = defineRuntime({
      name: 'greet',
      args: { who: arg.string(), times: arg.int({ default: 1 }) },
      run: (a) => ({ conclusion: 'SUCCESS', output: `hi ${a.who}` }),
    });
    const wf = workflow();
    const src = wf.node('src', debug());
    wf.node('hello', greet.task({ who: 'world', times: 2 })).dependsOn(src);
    wf.node('hello2', greet.task.partial()).argFrom('who', src);
    const spec = wf.build();
    // The types catch a missing required argument and an unknown argFrom name; build() catches them at run time too.
    const bad = workflow();
    // @ts-expect-error `who` is required
    bad.node('x', greet.task({ times: 2 }));
    // @ts-expect-error greet has no argument `whom`
    bad.node('y', greet.task({ who: 'a' })).argFrom('whom', 'x');
    assert.throws(
      () => bad.build(),
      /node "x": runtime "greet" needs argument "who".*node "y": runtime "greet" has no argument "whom"/,
    );
    assert.deepEqual(spec.nodes[1]!.metadata, {
      'adagio.arguments.greet.who': ['world'],
      'adagio.arguments.greet.times': ['2'],
    });
    assert.deepEqual(spec.nodes[2]!.metadata, { 'adagio.inputs.greet.who': ['src'] });
  });
});

describe('workflow builder: params and definitions (rule 16)', () => {
  it('declares params, interpolates their references and produces a definition the store accepts', async () => {
    const wf = workflow().describe('loads a day');
    const date = wf.param('date', { description: 'the day' });
    const env = wf.param('env', { default: 'staging' });
    const extract = wf.node('extract', exec({ command: 'echo', args: [`extracted ${date}`] }));
    wf.node('load', exec({ command: 'echo', args: [`${date} into ${env}`] })).dependsOn(extract);
    const def = wf.definition('nightly');
    assert.equal(def.name, 'nightly');
    assert.equal(def.description, 'loads a day');
    assert.deepEqual(def.params, [
      { name: 'date', required: true, description: 'the day' },
      { name: 'env', default: 'staging' },
    ]);
    assert.deepEqual(def.spec.nodes[1]!.metadata['adagio.arguments.exec.args'], [
      '{{params.date}} into {{params.env}}',
    ]);

    const repo = new MemoryRepository();
    try {
      const stored = await repo.putWorkflow(def.name, def);
      const run = await repo.start(undefined, { workflow: 'nightly', params: { date: '2026-01-31' } });
      assert.equal(stored.version, 1);
      assert.deepEqual(run.nodes[1]!.spec.metadata['adagio.arguments.exec.args'], [
        '2026-01-31 into staging',
      ]);
    } finally {
      await repo.close();
    }
    const json = wf.definitionJson('nightly') as { spec: { nodes: unknown[] } };
    assert.equal(json.spec.nodes.length, 2);
  });

  it('build() of a graph with params points to definition(); an undeclared reference is a problem', () => {
    const wf = workflow();
    const p = wf.param('p');
    wf.node('a', exec({ command: 'echo', args: [`${p}`, '{{params.q}}'] }));
    assert.throws(() => wf.build(), /declares params \(p\): store it with definition/);
    assert.throws(() => wf.definition('w'), /declares no param "q"/);
  });
});

describe('workflow builder: what the store and the runtimes accept', () => {
  it('a retry backoff needs a count in the same call, as in a graph file', () => {
    const backoff = { initial: '1s', factor: 2 };
    assert.throws(
      () => workflow().node('a', debug()).retry({ backoff }),
      (e: unknown) => e instanceof InvalidArgumentError && /backoff needs a retry count/.test(e.message),
    );
    assert.throws(
      () => workflow().node('a', debug()).retry({ fail: 3 }).retry({ backoff }),
      /node "a": a retry backoff needs a retry count/,
    );
    const wf = workflow();
    wf.node('a', debug()).retry({ fail: 3, backoff }).retry({ error: 2 });
    assert.deepEqual(wf.build().nodes[0]!.retry, {
      fail: { maxAttempts: 3, backoff },
      error: { maxAttempts: 2 },
    });
  });

  it('meta("__proto__") is refused as a reserved metadata key, not lost', () => {
    const wf = workflow();
    wf.node('a', debug()).meta('__proto__', 'x').meta('team', 'core');
    assert.throws(
      () => wf.build(),
      (e: unknown) =>
        e instanceof InvalidGraphError &&
        e.problems.some((p) => p.includes('node "a": metadata key "__proto__" is a reserved name')),
    );
  });

  it('an empty list is a value for a required strings argument, as resolveArgs reads it', () => {
    const files = defineRuntime({
      name: 'files',
      args: { paths: arg.strings() },
      run: ({ paths }) => ({ conclusion: 'SUCCESS', output: `${paths.length}` }),
    });
    const wf = workflow();
    wf.node('a', files.task({ paths: [] }));
    const node = wf.build().nodes[0]!;
    assert.deepEqual(node.metadata, { 'adagio.arguments.files.paths': [] });
    assert.deepEqual(resolveArgs('files', files.args, { spec: node, inputs: {} }), { paths: [] });
    const unset = workflow();
    unset.node('b', files.task.partial());
    assert.throws(() => unset.build(), /node "b": runtime "files" needs argument "paths"/);
  });

  it('a duration argument may be a param reference, checked once a run substitutes it', async () => {
    const wf = workflow();
    const t = wf.param('t', { default: '5s' });
    wf.node('a', exec({ command: 'true', timeout: `${t}` }));
    wf.node('b', debug({ sleep: `{{ params.t }}` }));
    const def = wf.definition('w');
    assert.deepEqual(def.spec.nodes[0]!.metadata['adagio.arguments.exec.timeout'], ['{{params.t}}']);
    assert.throws(() => exec({ command: 'true', timeout: 'soon' }), /"soon" is not a duration/);
    const repo = new MemoryRepository();
    try {
      await repo.putWorkflow(def.name, def);
      const run = await repo.start(undefined, { workflow: 'w', params: { t: '2s' } });
      const node = run.nodes.find((n) => n.spec.name === 'a')!;
      assert.equal(resolveArgs('exec', EXEC_ARGS, { spec: node.spec, inputs: {} }).timeout, 2000);
    } finally {
      await repo.close();
    }
  });

  it('a number of ms is written as a whole number that parses back, or refused', () => {
    for (const bad of [1e-7, 1.5, 1e21, -1, Number.NaN, Number.POSITIVE_INFINITY])
      assert.throws(
        () => exec({ command: 'true', timeout: bad }),
        /argument "timeout" of runtime "exec": .* is not a whole number of ms/,
        String(bad),
      );
    for (const ms of [0, 250, Number.MAX_SAFE_INTEGER]) {
      const [text] = exec({ command: 'true', timeout: ms }).metadata['adagio.arguments.exec.timeout']!;
      assert.equal(parseDuration(text!), ms);
    }
    assert.deepEqual(debug({ sleep: '1.5ms' }).metadata['adagio.arguments.debug.sleep'], ['1.5ms']);
  });
});
