import { realpathSync } from 'node:fs';
import { access, constants, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { globMatcher } from './glob.js';

/**
 * Which file an `exec` command names, and whether the allow-list lets it run
 * (docs/security.md). The allow-list judges the file that will run, never the
 * text written in the graph: a command with a slash is resolved to its real
 * path (`..` and every symlink resolved), a bare name is looked up by us on the
 * agent's own PATH (a node cannot change it), and the resolved file is what is
 * spawned, so nothing can be swapped in between the check and the start.
 */
export interface ResolvedCommand {
  /** The real path spawned. */
  file: string;
}

/** Resolves `command` (relative to `dir` when it has a slash, else on `searchPath`); a string is the error. */
export async function resolveCommand(
  command: string,
  searchPath: string,
  dir?: string,
): Promise<ResolvedCommand | string> {
  if (command.includes('/')) {
    const file = await executableRealPath(resolve(dir ?? process.cwd(), command));
    return file ? { file } : `"${command}" is not an executable file`;
  }
  for (const d of searchPath.split(':')) {
    // A relative PATH entry would depend on the working directory a node chooses.
    if (!isAbsolute(d)) continue;
    const file = await executableRealPath(join(d, command));
    if (file) return { file };
  }
  return `"${command}" is not found on the agent's PATH`;
}

async function executableRealPath(path: string): Promise<string | undefined> {
  try {
    const file = await realpath(path);
    if (!(await stat(file)).isFile()) return undefined;
    await access(file, constants.X_OK);
    return file;
  } catch {
    return undefined;
  }
}

/**
 * The allow-list. A glob with a slash (`/usr/bin/*`, `/opt/jobs/*.sh`) matches
 * the command's real path; its directory part is itself resolved once, so
 * `/tmp/x/*` works where /tmp is a symlink. A glob without a slash (`echo`,
 * `python3*`) matches a bare command name, found on the agent's PATH.
 */
export function allowListMatcher(globs: readonly string[]): (command: string, file: string) => boolean {
  const byPath = globMatcher(globs.filter((g) => g.includes('/')).map(resolveGlobDirectory));
  const byName = globMatcher(globs.filter((g) => !g.includes('/')));
  return (command, file) => (command.includes('/') ? byPath(file) : byName(command));
}

/** An exact path is resolved whole (it may be a symlink itself); a glob, up to its last literal directory. */
function resolveGlobDirectory(glob: string): string {
  const firstWild = glob.search(/[*?]/);
  if (firstWild < 0) {
    try {
      return realpathSync(glob);
    } catch {
      return glob;
    }
  }
  const literal = glob.slice(0, firstWild);
  const slash = literal.lastIndexOf('/');
  if (slash <= 0) return glob;
  try {
    return realpathSync(glob.slice(0, slash)) + glob.slice(slash);
  } catch {
    return glob;
  }
}
