#!/usr/bin/env node
// `adagio`: the command-line client. In a checkout (src/ present) it runs the TypeScript sources
// through tsx, so a stale build never shadows them; an installed package runs its built dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL('../dist/src/cli/main.js', import.meta.url).href);
}
await cli.main();
