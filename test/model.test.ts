import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  findCycle,
  graphFromJsonText,
  shouldRetry,
  ulidFloor,
  ulidSource,
  ulidTime,
  validateGraph,
} from '../src/model/index.js';

describe('graph JSON', () => {
  it('parses the canonical proto3 JSON with snake_case or camelCase', () => {
    const spec = graphFromJsonText(
      '{"nodes":[{"name":"a","runtime":"debug","retry":{"fail":{"max_attempts":3}}},{"name":"b","runtime":"debug","retry":{"error":{"maxAttempts":2}}}],"edges":[{"source":"a","destination":"b"}]}',
    );
    assert.equal(spec.nodes[0]?.retry.fail?.maxAttempts, 3);
    assert.equal(spec.nodes[1]?.retry.error?.maxAttempts, 2);
    assert.deepEqual(spec.edges, [{ source: 'a', destination: 'b' }]);
  });
  it('names the problem in malformed JSON', () => {
    assert.throws(() => graphFromJsonText('{"nodes": ['), /not valid JSON/);
    assert.throws(() => graphFromJsonText('{"nodes": [{"nmae": "a"}]}'), /nmae/);
  });
});

describe('validation', () => {
  const node = (name: string, runtime = 'debug') => ({ name, runtime, metadata: {}, retry: {} });
  it('names the cycle', () => {
    const spec = {
      nodes: [node('a'), node('b'), node('c')],
      edges: [
        { source: 'a', destination: 'b' },
        { source: 'b', destination: 'c' },
        { source: 'c', destination: 'a' },
      ],
    };
    assert.deepEqual(findCycle(spec), ['a', 'b', 'c', 'a']);
    assert.match(validateGraph(spec).join(), /cycle: a -> b -> c -> a/);
  });
  it('names unknown endpoints, duplicates, empty names and runtimes, self-loops', () => {
    const problems = validateGraph({
      nodes: [node('a'), node('a'), node(''), node('x', '')],
      edges: [
        { source: 'a', destination: 'zz' },
        { source: 'a', destination: 'a' },
        { source: 'a', destination: 'x' },
        { source: 'a', destination: 'x' },
      ],
    }).join('\n');
    assert.match(problems, /duplicate node name "a"/);
    assert.match(problems, /node #3 has an empty name/);
    assert.match(problems, /node "x" has an empty runtime/);
    assert.match(problems, /unknown destination node "zz"/);
    assert.match(problems, /cannot depend on itself/);
    assert.match(problems, /duplicate edge a -> x/);
  });
  it('an input must name a direct upstream node', () => {
    const withInput = (from: string) => ({
      nodes: [node('a'), node('b'), { ...node('c'), metadata: { 'adagio.inputs.debug.text': [from] } }],
      edges: [
        { source: 'a', destination: 'b' },
        { source: 'b', destination: 'c' },
      ],
    });
    assert.deepEqual(validateGraph(withInput('b')), []);
    assert.match(
      validateGraph(withInput('a')).join(),
      /node "c": adagio.inputs.debug.text names "a", which is not a direct upstream node .*add the edge a -> c/,
    );
    assert.match(validateGraph(withInput('ghost')).join(), /names "ghost", which is not a direct upstream/);
  });
  it('every example workflow is valid', () => {
    const dir = join(import.meta.dirname, '..', 'examples', 'workflows');
    const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 2);
    for (const f of files)
      assert.deepEqual(validateGraph(graphFromJsonText(readFileSync(join(dir, f), 'utf8'))), [], f);
  });
  it('finds no cycle in a deep chain without overflowing the stack', () => {
    const nodes = Array.from({ length: 50_000 }, (_, i) => node(`n${i}`));
    const edges = nodes.slice(1).map((n, i) => ({ source: `n${i}`, destination: n.name }));
    assert.equal(findCycle({ nodes, edges }), undefined);
  });
});

describe('retry rule', () => {
  const spec = { name: 'a', runtime: 'debug', metadata: {}, retry: { fail: { maxAttempts: 3 } } };
  it('counts attempts of the same conclusion only', () => {
    assert.equal(shouldRetry(spec, 'FAIL', []), true);
    assert.equal(shouldRetry(spec, 'FAIL', [{ conclusion: 'FAIL' }]), true);
    assert.equal(shouldRetry(spec, 'FAIL', [{ conclusion: 'FAIL' }, { conclusion: 'FAIL' }]), false);
    assert.equal(shouldRetry(spec, 'FAIL', [{ conclusion: 'ERROR' }, { conclusion: 'FAIL' }]), true);
    assert.equal(shouldRetry(spec, 'ERROR', []), false);
  });
});

describe('ids', () => {
  it('makes time-sortable ULIDs whose time can be read back', () => {
    const ids = ulidSource();
    const a = ids.next(1000);
    const b = ids.next(1000);
    const c = ids.next(2000);
    assert.ok(a < b && b < c);
    assert.equal(ulidTime(c), 2000);
    assert.ok(ulidFloor(2000) <= c && ulidFloor(2001) > c);
  });
});
