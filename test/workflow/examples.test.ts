/**
 * The examples are part of the documentation: they must run. Each is started
 * as a user would start it (`npx tsx examples/…`) and its result checked.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../../', import.meta.url));
const run = promisify(execFile);

describe('examples', () => {
  it('custom-agent.ts runs its workflow to SUCCESS with its own runtime', { timeout: 60_000 }, async () => {
    const { stderr } = await run(process.execPath, ['--import', 'tsx', 'examples/custom-agent.ts'], {
      cwd: root,
      timeout: 50_000,
    });
    // The logger writes JSON lines to stderr (not a TTY here).
    const lines = stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const completed = lines.filter((l) => l.msg === 'node completed');
    assert.deepEqual(completed.map((l) => [l.node, l.conclusion]).sort(), [
      ['count', 'SUCCESS'],
      ['report', 'SUCCESS'],
      ['source', 'SUCCESS'],
    ]);
    assert.equal(completed.find((l) => l.node === 'report')?.output, 'long words: 5');
    assert.equal(lines.at(-1)?.conclusion, 'SUCCESS');
  });

  it('workflow.ts prints the 7-node graph as canonical JSON', { timeout: 60_000 }, async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/workflow.ts'], {
      cwd: root,
      timeout: 50_000,
    });
    const graph = JSON.parse(stdout) as {
      nodes: { name: string }[];
      edges: { source: string; destination: string }[];
    };
    assert.deepEqual(
      graph.nodes.map((n) => n.name),
      [...'abcdefg'],
    );
    assert.deepEqual(graph.edges.map((e) => `${e.source}${e.destination}`).sort(), [
      'ac',
      'ad',
      'bd',
      'bf',
      'ce',
      'de',
      'eg',
      'fg',
    ]);
  });
});
