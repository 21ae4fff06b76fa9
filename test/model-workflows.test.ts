/**
 * The pure functions of rules 16 and 17 (src/model/workflows.ts): what every
 * backend calls, tested once without a store.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { GraphSpec } from '../src/model/types.js';
import {
  filtering,
  normalizeWorkflow,
  paramReferences,
  planStart,
  resolveParams,
  runMatches,
  substituteParams,
  validateWorkflow,
  workflowContentHash,
} from '../src/model/workflows.js';

const spec = (values: string[]): GraphSpec => ({
  nodes: [{ name: 'a', runtime: 'r', metadata: { k: values }, retry: {} }],
  edges: [],
});

describe('workflow rules (16, 17)', () => {
  it('finds param references, spaces allowed inside the braces, and substitutes every occurrence', () => {
    const g = spec(['{{params.a}}-{{ params.b }}-{{params.a}}', '{{schedule.time}}', 'plain']);
    assert.deepEqual(paramReferences(g), ['a', 'b']);
    assert.deepEqual(substituteParams(g, { a: '1', b: '2' }).nodes[0]!.metadata.k, [
      '1-2-1',
      '{{schedule.time}}',
      'plain',
    ]);
    assert.equal(
      substituteParams({ ...g, deadline: '2h' }, {}).deadline,
      '2h',
      "the graph's deadline goes with it",
    );
    // Values are inserted as they are: a value that looks like a reference is not expanded again.
    assert.deepEqual(substituteParams(spec(['{{params.a}}']), { a: '{{params.b}}' }).nodes[0]!.metadata.k, [
      '{{params.b}}',
    ]);
  });

  it('resolves params: defaults filled, unknown and missing refused by name', () => {
    const declared = [
      { name: 'date', required: true },
      { name: 'env', default: 'staging' },
      { name: 'note' },
    ];
    assert.deepEqual(resolveParams(declared, { date: 'd' }), { date: 'd', env: 'staging', note: '' });
    assert.throws(() => resolveParams(declared, {}), /missing required param "date"/);
    assert.throws(() => resolveParams(declared, { date: 'd', x: '1', y: '2' }), /unknown params "x", "y"/);
    assert.throws(() => resolveParams(declared, { date: 'a\u0000' }), /param "date" contains a NUL/);
  });

  it('validates a workflow: names, params, references and the graph, every problem at once', () => {
    const problems = validateWorkflow('bad name', {
      spec: { nodes: [{ name: 'a', runtime: '', metadata: { k: ['{{params.x}}'] }, retry: {} }], edges: [] },
      params: [{ name: 'p', required: true, default: 'd' }, { name: '' }],
    });
    assert.ok(problems.some((p) => p.includes('"bad name"')));
    assert.ok(problems.some((p) => p.includes('required and has a default')));
    assert.ok(problems.some((p) => p.includes('param #2 name is required')));
    assert.ok(problems.some((p) => p.includes('no param "x"')));
    assert.ok(problems.some((p) => p.includes('empty runtime')));
  });

  it('the content hash ignores key order and absent versus empty fields', () => {
    const a = normalizeWorkflow({
      spec: { nodes: [{ name: 'a', runtime: 'r', metadata: { x: ['1'], y: ['2'] }, retry: {} }], edges: [] },
    });
    const b = normalizeWorkflow({
      spec: { nodes: [{ name: 'a', runtime: 'r', metadata: { y: ['2'], x: ['1'] }, retry: {} }], edges: [] },
      description: '',
      params: [],
    });
    assert.equal(workflowContentHash(a), workflowContentHash(b));
    assert.notEqual(workflowContentHash(a), workflowContentHash({ ...b, description: 'other' }));
    // A param's empty default is no default: both give it "" at start.
    const spec = { nodes: [], edges: [] };
    assert.equal(
      workflowContentHash(normalizeWorkflow({ spec, params: [{ name: 'x' }] })),
      workflowContentHash(normalizeWorkflow({ spec, params: [{ name: 'x', default: '' }] })),
    );
    assert.notEqual(
      workflowContentHash(normalizeWorkflow({ spec, params: [{ name: 'x' }] })),
      workflowContentHash(normalizeWorkflow({ spec, params: [{ name: 'x', default: 'y' }] })),
    );
  });

  it('plans a start: graph or workflow, never both; the name defaults to the workflow', () => {
    const def = {
      name: 'w',
      version: 2,
      spec: spec(['{{params.p}}']),
      description: '',
      params: [{ name: 'p', default: 'x' }],
      createdAt: '',
    };
    const plan = planStart(undefined, { workflow: 'w', labels: { k: 'v' }, requestId: 'r' }, def);
    assert.deepEqual(plan.identity, {
      workflow: 'w',
      workflowVersion: 2,
      params: { p: 'x' },
      name: 'w',
      labels: { k: 'v' },
      requestId: 'r',
    });
    assert.deepEqual(plan.spec.nodes[0]!.metadata.k, ['x']);
    assert.throws(() => planStart(spec(['a']), { workflow: 'w' }, def), /not both/);
    assert.throws(() => planStart(undefined, {}), /a graph spec or a workflow/);
    assert.throws(() => planStart(spec(['a']), { requestId: '' }), /request id must not be empty/);
  });

  it('matches runs against filters: all labels, status, conclusion, id prefix or name text', () => {
    const run = {
      id: '01ABC',
      name: 'Nightly load',
      labels: { a: '1', b: '2' },
      workflow: 'w',
      status: 'COMPLETED' as const,
      conclusion: 'FAIL' as const,
    };
    assert.equal(filtering({}), false);
    assert.equal(runMatches(run, { labels: { a: '1', b: '2' } }), true);
    assert.equal(runMatches(run, { labels: { a: '1', c: '3' } }), false);
    assert.equal(runMatches(run, { status: 'COMPLETED', conclusion: 'FAIL', workflow: 'w' }), true);
    assert.equal(runMatches(run, { conclusion: 'SUCCESS' }), false);
    assert.equal(runMatches(run, { search: '01ab' }), true);
    assert.equal(runMatches(run, { search: 'LOAD' }), true);
    assert.equal(runMatches(run, { search: 'ABC' }), false, 'an id matches by prefix only');
  });
});
