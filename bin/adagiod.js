#!/usr/bin/env node
// `adagiod`: the daemon. In a checkout (src/ present) it runs the TypeScript sources through tsx,
// so a stale build never shadows them; an installed package runs its built dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/daemon/main.ts', import.meta.url);
let daemon;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  daemon = await import(source.href);
} else {
  daemon = await import(new URL('../dist/src/daemon/main.js', import.meta.url).href);
}
process.exit(await daemon.main(process.argv.slice(2)));
