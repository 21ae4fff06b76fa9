/** The shape of the code: no import cycles in src/ (scripts/import-cycles.mjs finds them). */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
// @ts-expect-error: a plain ESM script without type declarations.
import { cycles, importGraph } from '../scripts/import-cycles.mjs';

const root = new URL('..', import.meta.url).pathname;

describe('architecture', () => {
  it('src/ has no import cycles', () => {
    const found: string[][] = cycles(importGraph(join(root, 'src')));
    assert.deepEqual(
      found.map((scc) => scc.map((f) => f.slice(root.length))),
      [],
    );
  });

  it('the cycle finder finds a cycle through a type import and an index', () => {
    const dir = mkdtempSync(join(tmpdir(), 'adagio-cycles-'));
    try {
      mkdirSync(join(dir, 'b'));
      writeFileSync(join(dir, 'a.ts'), "import type { B } from './b/index.js';\nexport type A = B;\n");
      writeFileSync(join(dir, 'b', 'index.ts'), "export * from './b.js';\n");
      writeFileSync(join(dir, 'b', 'b.ts'), "import { x } from '../a.js';\nexport type B = typeof x;\n");
      writeFileSync(join(dir, 'c.ts'), "import type { A } from './a.js';\nexport type C = A;\n");
      const found: string[][] = cycles(importGraph(dir));
      assert.deepEqual(
        found.map((scc) => scc.map((f) => f.slice(dir.length + 1)).sort()),
        [['a.ts', 'b/b.ts', 'b/index.ts']],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
