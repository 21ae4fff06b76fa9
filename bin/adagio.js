#!/usr/bin/env node
// `adagio`: the command-line client. Runs the built CLI (dist/, after `npm run build`) when
// present, else the TypeScript sources through tsx, so it works from a checkout without a build.
import { existsSync } from 'node:fs';

const built = new URL('../dist/src/cli/main.js', import.meta.url);
let cli;
if (existsSync(built)) {
  cli = await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  cli = await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
await cli.main();
