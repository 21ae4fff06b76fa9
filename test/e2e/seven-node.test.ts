/**
 * End to end on the embedded backend: the example graph file, started on the
 * real memory repository and run by an in-process agent pool with the
 * built-in runtimes (real `exec` processes and `debug`).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { sevenNodeWorkflow } from '../../examples/workflow.js';
import { AgentPool } from '../../src/agent/index.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { graphFromJsonText } from '../../src/model/wire.js';
import { builtinRuntimes } from '../../src/runtimes/index.js';
import { completed, conclusions, node, text } from '../agent/helpers.js';

const GRAPH_FILE = new URL('../../examples/workflows/seven-node.json', import.meta.url);

describe('the 7-node example DAG on an in-process pool', () => {
  const repository = new MemoryRepository();
  const pool = new AgentPool({ repository, runtimes: builtinRuntimes(), concurrency: 3 });
  before(() => pool.start());
  after(async () => {
    await pool.stop({ graceMs: 1000 });
    await repository.close();
  });

  it('the graph file and the builder example describe the same graph', async () => {
    const fromFile = graphFromJsonText(await readFile(GRAPH_FILE, 'utf8'));
    assert.deepEqual(fromFile, sevenNodeWorkflow().build());
  });

  it('completes with each node fed its upstream outputs', async () => {
    const spec = graphFromJsonText(await readFile(GRAPH_FILE, 'utf8'));
    const run = await repository.start(spec);
    const done = await completed(repository, run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    for (const n of done.nodes) assert.deepEqual(conclusions(n), ['SUCCESS'], n.spec.name);

    const out = (name: string) => text(node(done, name).attempts[0]!.output);
    const inputs = (name: string) =>
      Object.fromEntries(Object.entries(node(done, name).inputs).map(([k, v]) => [k, text(v)]));
    assert.equal(out('a'), 'alpha\n');
    assert.equal(out('b'), 'debug: success');
    assert.equal(out('c'), 'alpha', 'cat got a’s output on stdin');
    assert.equal(out('d'), 'debug: success (slept 50ms)');
    assert.equal(out('e'), 'ALPHA');
    assert.equal(out('f'), 'debug: success (slept 100ms)');
    assert.equal(out('g'), 'ALPHA\n', 'echo got e’s output as its arguments');

    assert.deepEqual(inputs('a'), {});
    assert.deepEqual(inputs('c'), { a: 'alpha\n' });
    assert.deepEqual(inputs('d'), { a: 'alpha\n', b: 'debug: success' });
    assert.deepEqual(inputs('e'), { c: 'alpha', d: 'debug: success (slept 50ms)' });
    assert.deepEqual(inputs('f'), { b: 'debug: success' });
    assert.deepEqual(inputs('g'), { e: 'ALPHA', f: 'debug: success (slept 100ms)' });

    // Layers ran in order: no node started before its upstream nodes finished.
    for (const edge of done.edges) {
      const up = node(done, edge.source).attempts[0]!.finishedAt;
      const down = node(done, edge.destination).startedAt;
      assert.ok(down >= up, `${edge.source} finished (${up}) before ${edge.destination} started (${down})`);
    }
    assert.ok(done.nodes.every((n) => pool.agentIds.includes(n.attempts[0]!.agentId)));
  });

  it('a failing exec node leaves its downstream nodes unreached', async () => {
    const spec = graphFromJsonText(await readFile(GRAPH_FILE, 'utf8'));
    const c = spec.nodes.find((n) => n.name === 'c')!;
    c.metadata = {
      'adagio.arguments.exec.command': ['sh'],
      'adagio.arguments.exec.args': ['-c', 'echo nope; exit 1'],
    };
    const done = await completed(repository, (await repository.start(spec)).id);
    assert.equal(done.conclusion, 'FAIL');
    assert.deepEqual(conclusions(node(done, 'c')), ['FAIL']);
    assert.equal(text(node(done, 'c').attempts[0]!.output), 'nope\n');
    for (const name of ['e', 'g']) {
      assert.equal(node(done, name).status, 'COMPLETED');
      assert.deepEqual(conclusions(node(done, name)), [], `${name} is unreached`);
    }
    for (const name of ['a', 'b', 'd', 'f'])
      assert.deepEqual(conclusions(node(done, name)), ['SUCCESS'], name);
  });
});
