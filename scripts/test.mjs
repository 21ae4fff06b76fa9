#!/usr/bin/env node
// Runs every test file (test/**/*.test.ts) with Node's test runner, TypeScript via tsx.
// `npm test -- conformance` runs only files whose path contains "conformance".
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const passthrough = process.argv.slice(2).filter((a) => a.startsWith('-'));

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const files = walk(join(root, 'test'))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
// The UI tests drive the built UI (ui/dist): build it first when it is missing or older
// than its sources. Other test runs never pay for this.
if (files.some((f) => f.startsWith(join('test', 'ui') + sep))) {
  const { ensureUiBuilt } = await import('./ui-build.mjs');
  if (!ensureUiBuilt(root)) process.exit(1);
}
// A default bound per test: a hung test fails (naming itself) instead of stalling the whole run.
// Tests that need longer say so with their own `timeout` option.
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...passthrough, ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } },
);
process.exit(result.status ?? 1);
