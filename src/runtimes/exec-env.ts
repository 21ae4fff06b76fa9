import { globMatcher } from './glob.js';

/**
 * The environment an `exec` command gets (docs/security.md): a few variables
 * from the daemon's own environment (a pass-list, never ADAGIOD_*, which holds
 * the daemon's tokens and passwords), the attempt's identity (ADAGIO_*), then
 * the node's `env` argument, which may not set a variable that changes what
 * program runs or what it loads, unless the operator allowed that name.
 */

/** Passed from the daemon's environment unless -exec-pass-env says otherwise. */
export const DEFAULT_PASS_ENV: readonly string[] = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LANGUAGE',
  'LC_*',
  'TZ',
  'TMPDIR',
  'TERM',
];

/**
 * Names a node's `env` may not set: they pick the program (PATH), inject code
 * into a dynamic loader or an interpreter at start-up, or make a shell run a
 * file or re-parse its input.
 */
export const LOADER_ENV: readonly string[] = [
  'PATH',
  'IFS',
  'ENV',
  'BASH_ENV',
  'BASH_FUNC_*',
  'SHELLOPTS',
  'BASHOPTS',
  'PS4',
  'CDPATH',
  'LD_*',
  'DYLD_*',
  'GCONV_PATH',
  'GLIBC_TUNABLES',
  'LOCPATH',
  'MALLOC_*',
  'NODE_OPTIONS',
  'NODE_PATH',
  'PYTHON*',
  'PERL5LIB',
  'PERL5OPT',
  'PERLLIB',
  'RUBYLIB',
  'RUBYOPT',
  'JAVA_TOOL_OPTIONS',
  '_JAVA_OPTIONS',
  'JDK_JAVA_OPTIONS',
  'GIT_*',
  'ADAGIO_*',
  'ADAGIOD_*',
];

/** The daemon's own settings: never passed, never settable. */
const DAEMON_PREFIX = 'ADAGIOD_';

export interface ExecEnvOptions {
  /** Globs of the daemon's variables to pass; default DEFAULT_PASS_ENV. */
  pass?: readonly string[];
  /** Globs of LOADER_ENV names a node's `env` may set anyway. */
  unsafe?: readonly string[];
}

export type EnvBuilder = (
  base: NodeJS.ProcessEnv,
  identity: Record<string, string>,
  entries: readonly string[],
) => { env: NodeJS.ProcessEnv } | { error: string };

export function execEnvBuilder(options: ExecEnvOptions = {}): EnvBuilder {
  const pass = globMatcher(options.pass ?? DEFAULT_PASS_ENV);
  const loader = globMatcher(LOADER_ENV);
  const unsafe = globMatcher(options.unsafe ?? []);
  return (base, identity, entries) => {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(base))
      if (value !== undefined && pass(name) && !name.toUpperCase().startsWith(DAEMON_PREFIX))
        env[name] = value;
    Object.assign(env, identity);
    for (const entry of entries) {
      const eq = entry.indexOf('=');
      if (eq <= 0) return { error: `argument "env" of runtime "exec": "${entry}" is not NAME=value` };
      const name = entry.slice(0, eq);
      const upper = name.toUpperCase();
      if (upper.startsWith(DAEMON_PREFIX) || (loader(upper) && !unsafe(name)))
        return {
          error:
            `argument "env" of runtime "exec": ${name} may not be set by a node (it changes what runs or loads); ` +
            'the agent can allow it with -exec-unsafe-env',
        };
      env[name] = entry.slice(eq + 1);
    }
    return { env };
  };
}
