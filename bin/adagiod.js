#!/usr/bin/env node
// The built daemon when `npm run build` has run; otherwise the TypeScript sources through tsx.
import { existsSync } from 'node:fs';

const built = new URL('../dist/src/daemon/main.js', import.meta.url);
let mod;
if (existsSync(built)) mod = await import(built.href);
else {
  const { register } = await import('tsx/esm/api');
  register();
  mod = await import('../src/daemon/main.ts');
}
process.exit(await mod.main(process.argv.slice(2)));
