// Which module a bin/ script runs. An installed package runs its built dist/. In a checkout (src/
// present) it runs dist/ too when that build is at least as new as every source file (`npm run
// build`, run by `npm install` as the prepare script): node starts it in a fraction of the time tsx
// takes to compile the sources. A stale or missing build never shadows the sources: then tsx runs them.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = new URL('../', import.meta.url);

/** `rel` is a module path under src/ without its extension, e.g. `cli/main`. */
export async function loadEntry(rel) {
  const source = new URL(`src/${rel}.ts`, root);
  const built = new URL(`dist/src/${rel}.js`, root);
  if (!existsSync(source) || builtIsCurrent(built)) return import(built.href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(source.href);
}

function builtIsCurrent(built) {
  let builtAt;
  try {
    builtAt = statSync(built).mtimeMs;
  } catch {
    return false;
  }
  return newestUnder(fileURLToPath(new URL('src/', root))) <= builtAt;
}

/** The newest modification time of any file under `dir` (a few ms for the whole of src/). */
function newestUnder(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    const t = entry.isDirectory() ? newestUnder(path) : statSync(path).mtimeMs;
    if (t > newest) newest = t;
  }
  return newest;
}
