// Builds the web UI (ui/dist) when it is missing or older than anything it is built from.
// Used by scripts/test.mjs before the UI tests; `node scripts/ui-build.mjs` runs it alone.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

// What the bundle is made of: the UI itself, plus the generated protobuf code and the
// model helpers (validation, wire mapping) it imports from src/.
const INPUTS = [
  'ui/src',
  'ui/public',
  'ui/index.html',
  'ui/vite.config.ts',
  'src/gen',
  'src/model',
  'package-lock.json',
];

function newest(path) {
  if (!existsSync(path)) return 0;
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  let t = info.mtimeMs;
  for (const name of readdirSync(path)) t = Math.max(t, newest(join(path, name)));
  return t;
}

/** True when ui/dist is up to date (built now if needed); false when the build failed. */
export function ensureUiBuilt(root) {
  const index = join(root, 'ui', 'dist', 'index.html');
  const built = existsSync(index) ? statSync(index).mtimeMs : 0;
  const sources = Math.max(...INPUTS.map((p) => newest(join(root, p))));
  if (built > sources) return true;
  console.error(built ? 'ui: ui/dist is older than its sources, rebuilding' : 'ui: building ui/dist');
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(npm, ['run', '--silent', 'build:ui'], {
    cwd: root,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (r.status !== 0) console.error('ui: `npm run build:ui` failed');
  return r.status === 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href)
  process.exit(ensureUiBuilt(process.cwd()) ? 0 : 1);
