import { Command, CommanderError, Option } from 'commander';
import { createLogger } from '../log.js';
import { AdagioError } from '../protocol/errors.js';
import { ConfigError, envName, OPTIONS, type RawValues, ROLES, type Role, resolveConfig } from './config.js';
import { Daemon } from './daemon.js';

/**
 * `adagiod [api|agent] [options]`. Go-style single-dash long flags
 * (`-backend-type etcd`) are accepted next to `--backend-type etcd`.
 * Exit codes: 0 after a clean shutdown, 2 for bad flags or configuration,
 * 1 when the backend cannot be reached or the daemon fails at runtime.
 */
export function normalizeArgv(argv: string[]): string[] {
  return argv.map((a) =>
    /^-[a-z][a-z0-9]*(?:-[a-z0-9]+)+(?:=.*)?$|^-[a-z]{2,}(?:=.*)?$/.test(a) ? `-${a}` : a,
  );
}

/**
 * A bool flag takes an optional value (`-ui false`), so commander would read a
 * role right after it (`-example api`) as that value: such a flag is given its
 * `true` inline, and the role stays the role.
 */
export function keepRoleAfterBoolFlag(argv: string[]): string[] {
  const bools = new Set(OPTIONS.filter((o) => o.kind === 'bool').map((o) => `--${o.name}`));
  return argv.map((a, i) =>
    bools.has(a) && (ROLES as readonly string[]).includes(argv[i + 1] ?? '') ? `${a}=true` : a,
  );
}

function buildCommand(): Command {
  const program = new Command('adagiod')
    .description(
      'Adagio daemon: the control plane API (gRPC, Connect, JSON, web UI) and/or an agent pool.\n' +
        'Runs both roles when neither is named. Every option can also be set with env ADAGIOD_<NAME>\n' +
        'or in a TOML file (-config) with keys named like the options; precedence: flag > env > file > default.',
    )
    .argument('[role]', `${ROLES.join(' or ')}; both when omitted`)
    .option('--config <file>', 'TOML configuration file')
    .helpOption('-h, --help', 'show this help')
    .showHelpAfterError('(run adagiod --help for the options)')
    .allowExcessArguments(false);
  for (const o of OPTIONS) {
    const flag =
      o.kind === 'bool' ? `--${o.name} [bool]` : `--${o.name} <${o.kind === 'list' ? 'a,b' : o.kind}>`;
    const def = o.default !== undefined && o.default !== '' && !o.secret ? ` (default ${o.default})` : '';
    const opt = new Option(flag, `${o.description}${def} [${envName(o.name)}]`);
    if (o.choices) opt.choices(o.choices);
    program.addOption(opt);
  }
  return program;
}

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const program = buildCommand();
  program.exitOverride();
  program.configureOutput({
    writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `adagiod: ${s}` : s),
  });
  try {
    program.parse(keepRoleAfterBoolFlag(normalizeArgv(argv)), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  const [role] = program.args;
  if (role !== undefined && !(ROLES as readonly string[]).includes(role)) {
    process.stderr.write(`adagiod: unknown role "${role}"; use api, agent, or neither for both\n`);
    return 2;
  }
  const opts = program.opts<Record<string, string | boolean | undefined>>();
  const flags: RawValues = {};
  for (const o of OPTIONS) {
    const v = opts[camel(o.name)];
    if (v !== undefined) flags[o.name] = v === true ? 'true' : String(v);
  }

  let daemon: Daemon;
  try {
    const config = resolveConfig(
      role ? [role as Role] : [],
      flags,
      process.env,
      (opts.config as string | undefined) ?? process.env.ADAGIOD_CONFIG,
    );
    daemon = new Daemon(config, createLogger({ level: config.logLevel, fields: { service: 'adagiod' } }));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`adagiod: ${e.message}\n`);
      return 2;
    }
    throw e;
  }

  let signals = 0;
  const done = new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (++signals > 1) {
        process.stderr.write(`adagiod: second ${sig}, exiting without waiting\n`);
        process.exit(130);
      }
      daemon.stop().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  try {
    await daemon.start();
  } catch (e) {
    const msg = e instanceof AdagioError || e instanceof ConfigError ? e.message : describe(e);
    process.stderr.write(`adagiod: ${msg}\n`);
    await daemon.stop().catch(() => {});
    return e instanceof ConfigError ? 2 : 1;
  }
  return done;
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'EADDRINUSE')
    return `cannot listen: address already in use (${err.message.split(' ').pop()})`;
  if (err?.code === 'EACCES') return `cannot listen: permission denied (${err.message})`;
  return err?.message ?? String(e);
}

function camel(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

// Run when executed directly (bin/adagiod.js or `node --import tsx src/daemon/main.ts`).
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/').split('/').pop()!)) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`adagiod: ${describe(e)}\n`);
      process.exit(1);
    },
  );
}
