import { readFileSync } from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { isLoopbackHost } from '../api/guard.js';
import type { LogLevel } from '../log.js';
import { MAX_TIMER_MS } from '../model/duration.js';
import { DurationError, parseDuration } from '../runtimes/duration.js';
import { DEFAULT_PASS_ENV } from '../runtimes/exec-env.js';

/**
 * adagiod's options: one table, read from flags, env (ADAGIOD_<NAME>), a TOML
 * file (keys named like the flags) and defaults, in that order of precedence.
 */
export class ConfigError extends Error {}

type Kind = 'string' | 'list' | 'int' | 'duration' | 'bool';

export interface OptionDef {
  name: string;
  kind: Kind;
  description: string;
  default?: string;
  choices?: readonly string[];
  /** Never printed: tokens and passwords. */
  secret?: boolean;
}

export const BACKENDS = ['memory', 'etcd', 'postgres', 'remote', 'dynamodb'] as const;
export type BackendType = (typeof BACKENDS)[number];
export const ROLES = ['api', 'agent'] as const;
export type Role = (typeof ROLES)[number];

export const OPTIONS: readonly OptionDef[] = [
  {
    name: 'backend-type',
    kind: 'string',
    description: 'where state lives',
    default: 'memory',
    choices: BACKENDS,
  },
  {
    name: 'etcd-addresses',
    kind: 'list',
    description: 'etcd endpoints, comma-separated',
    default: 'http://127.0.0.1:2379',
  },
  {
    name: 'api-address',
    kind: 'string',
    description: 'adagiod API URL the agents work through (-backend-type remote, agent role)',
  },
  { name: 'etcd-namespace', kind: 'string', description: 'key prefix in etcd', default: 'adagio/v1/' },
  { name: 'etcd-username', kind: 'string', description: 'etcd user (with -etcd-password)' },
  { name: 'etcd-password', kind: 'string', description: 'etcd password', secret: true },
  { name: 'etcd-ca-file', kind: 'string', description: 'PEM CA bundle to verify etcd (enables TLS)' },
  {
    name: 'etcd-cert-file',
    kind: 'string',
    description: 'PEM client certificate for etcd (with -etcd-key-file)',
  },
  { name: 'etcd-key-file', kind: 'string', description: 'PEM client key for etcd' },
  {
    name: 'postgres-url',
    kind: 'string',
    description: 'PostgreSQL URL; TLS via sslmode=… in it',
    secret: true,
  },
  {
    name: 'postgres-schema',
    kind: 'string',
    description: 'PostgreSQL schema for Adagio’s tables',
    default: 'adagio',
  },
  {
    name: 'dynamodb-table',
    kind: 'string',
    description: 'DynamoDB table (created with its indexes when missing)',
    default: 'adagio',
  },
  {
    name: 'dynamodb-region',
    kind: 'string',
    description: 'AWS region of the DynamoDB table (default: the SDK’s, e.g. AWS_REGION)',
  },
  {
    name: 'dynamodb-endpoint',
    kind: 'string',
    description: 'DynamoDB endpoint URL: DynamoDB Local or a VPC endpoint (credentials: the SDK’s chain)',
  },
  {
    name: 'listen',
    kind: 'string',
    description: 'API address host:port (api role)',
    default: '127.0.0.1:7890',
  },
  {
    name: 'api-token',
    kind: 'string',
    description:
      'bearer token for people and tools: grants every API call; required to listen beyond loopback',
    secret: true,
  },
  {
    name: 'agent-token',
    kind: 'string',
    description: 'token for agents: grants the agent API only; with -backend-type remote, the token sent',
    secret: true,
  },
  {
    name: 'allowed-hosts',
    kind: 'list',
    description: 'more Host names the API answers to (DNS-rebinding guard; * for any)',
    default: '',
  },
  {
    name: 'cors-origins',
    kind: 'list',
    description: 'browser origins allowed to call the API (* for any)',
    default: '',
  },
  {
    name: 'max-body-bytes',
    kind: 'int',
    description: 'largest API request body',
    default: String(16 * 1024 * 1024),
  },
  {
    name: 'max-queued-nodes',
    kind: 'int',
    description: 'Start answers 429 past this many WAITING+READY nodes (0: no cap)',
    default: '100000',
  },
  { name: 'ui', kind: 'bool', description: 'serve the web UI at / (api role)', default: 'true' },
  {
    name: 'schedules',
    kind: 'bool',
    description:
      'fire schedules from this process (api role; any number of processes may, each slot starts once)',
    default: 'true',
  },
  {
    name: 'agents',
    kind: 'int',
    description: 'attempts run at once by this process (agent role)',
    default: '4',
  },
  {
    name: 'claim-ahead',
    kind: 'int',
    description:
      'nodes claimed ahead while every agent is busy, so the next starts without a round trip (agent role; empty: as many as -agents, 0: off)',
    default: '',
  },
  {
    name: 'runtimes',
    kind: 'list',
    description: 'runtimes this process’s agents run',
    default: 'exec,debug',
  },
  {
    name: 'exec-allow',
    kind: 'list',
    description: 'commands `exec` may run (globs over the resolved path, or bare names); empty allows any',
    default: '',
  },
  {
    name: 'exec-pass-env',
    kind: 'list',
    description: 'daemon environment variables `exec` commands inherit (globs; ADAGIOD_* never)',
    default: DEFAULT_PASS_ENV.join(','),
  },
  {
    name: 'exec-unsafe-env',
    kind: 'list',
    description: 'loader variables (PATH, LD_*, BASH_ENV…) an `exec` node’s env may set anyway (globs)',
    default: '',
  },
  {
    name: 'lease-ttl',
    kind: 'duration',
    description: 'how soon others recover this agent’s work if it dies',
    default: '10s',
  },
  {
    name: 'runtime-timeout',
    kind: 'duration',
    description: 'an attempt of a node without its own timeout running longer is an ERROR; 0: no limit',
    default: '0',
  },
  {
    name: 'grace-period',
    kind: 'duration',
    description: 'on shutdown, how long running work may finish',
    default: '30s',
  },
  {
    name: 'retention',
    kind: 'duration',
    description: 'delete completed runs older than this (0 keeps all)',
    default: '0',
  },
  {
    name: 'example',
    kind: 'bool',
    description: 'start the demo workflow (examples/workflows/demo.json) at boot',
    default: 'false',
  },
  {
    name: 'log-level',
    kind: 'string',
    description: 'debug, info, warn, error',
    default: 'info',
    choices: ['debug', 'info', 'warn', 'error'],
  },
];

export interface DaemonConfig {
  roles: Role[];
  backendType: BackendType;
  etcd: {
    addresses: string[];
    namespace: string;
    username?: string;
    password?: string;
    caFile?: string;
    certFile?: string;
    keyFile?: string;
  };
  postgres: { url?: string; schema: string };
  dynamodb: { table: string; region?: string; endpoint?: string };
  /** -backend-type remote: the API to work through, and the token to send (agent, else API token). */
  remote: { address?: string; token?: string };
  listen: { host: string; port: number };
  /** People tokens (-api-token): every call. */
  tokens: string[];
  /** Agent tokens (-agent-token): the agent API only. */
  agentTokens: string[];
  allowedHosts: string[];
  corsOrigins: string[];
  maxBodyBytes: number;
  maxQueuedNodes: number;
  ui: boolean;
  schedules: boolean;
  agents: number;
  /** Undefined: as many as agents. */
  claimAhead?: number;
  runtimes: string[];
  execAllow: string[];
  execPassEnv: string[];
  execUnsafeEnv: string[];
  leaseTtlMs: number;
  runtimeTimeoutMs: number;
  gracePeriodMs: number;
  retentionMs: number;
  example: boolean;
  logLevel: LogLevel;
}

export type RawValues = Record<string, string | undefined>;

/** Merges the sources (flag > env > file > default) and checks every value. */
export function resolveConfig(
  roles: Role[],
  flags: RawValues,
  env: NodeJS.ProcessEnv,
  configFile: string | undefined,
): DaemonConfig {
  const file = configFile ? readConfigFile(configFile) : {};
  const raw: RawValues = {};
  for (const o of OPTIONS) {
    // `ADAGIOD_API_TOKEN= adagiod` sets nothing: an empty variable overriding the file would drop its token.
    const fromEnv = env[envName(o.name)] || undefined;
    raw[o.name] = flags[o.name] ?? fromEnv ?? file[o.name] ?? o.default;
  }
  const v = new Values(raw);
  const backendType = v.choice('backend-type') as BackendType;
  const listen = parseListen(v.string('listen') ?? '');
  const config: DaemonConfig = {
    roles: roles.length > 0 ? roles : [...ROLES],
    backendType,
    etcd: {
      addresses: v.list('etcd-addresses'),
      namespace: v.string('etcd-namespace') ?? 'adagio/v1/',
      username: v.string('etcd-username'),
      password: v.string('etcd-password'),
      caFile: v.string('etcd-ca-file'),
      certFile: v.string('etcd-cert-file'),
      keyFile: v.string('etcd-key-file'),
    },
    postgres: { url: v.string('postgres-url'), schema: v.string('postgres-schema') ?? 'adagio' },
    dynamodb: {
      table: v.string('dynamodb-table') ?? 'adagio',
      region: v.string('dynamodb-region'),
      endpoint: v.string('dynamodb-endpoint'),
    },
    remote: { address: v.string('api-address'), token: v.string('agent-token') ?? v.string('api-token') },
    listen,
    tokens: [v.string('api-token')].filter((t): t is string => !!t),
    agentTokens: [v.string('agent-token')].filter((t): t is string => !!t),
    allowedHosts: v.list('allowed-hosts'),
    corsOrigins: v.list('cors-origins'),
    maxBodyBytes: v.int('max-body-bytes', 1024),
    maxQueuedNodes: v.int('max-queued-nodes', 0),
    ui: v.bool('ui'),
    schedules: v.bool('schedules'),
    agents: v.int('agents', 1, MAX_AGENTS),
    claimAhead: v.string('claim-ahead') === undefined ? undefined : v.int('claim-ahead', 0, MAX_CLAIM_AHEAD),
    runtimes: v.list('runtimes'),
    execAllow: v.list('exec-allow'),
    execPassEnv: v.list('exec-pass-env'),
    execUnsafeEnv: v.list('exec-unsafe-env'),
    leaseTtlMs: v.duration('lease-ttl', 1000),
    runtimeTimeoutMs: v.duration('runtime-timeout', 0),
    gracePeriodMs: v.duration('grace-period', 0),
    // Compared with run ages, not a timer's delay: years are fine.
    retentionMs: v.duration('retention', 0, Number.MAX_SAFE_INTEGER),
    example: v.bool('example'),
    logLevel: v.choice('log-level') as LogLevel,
  };
  // Any web page could then pass the request guard and start runs (exec ones included) on this daemon.
  if (config.corsOrigins.includes('*') && config.tokens.length === 0)
    throw new ConfigError('-cors-origins * lets any web page call this API: it needs -api-token');
  if (backendType === 'postgres' && !config.postgres.url)
    throw new ConfigError('-backend-type postgres needs -postgres-url (or ADAGIOD_POSTGRES_URL)');
  if (backendType === 'etcd' && config.etcd.addresses.length === 0)
    throw new ConfigError('-backend-type etcd needs -etcd-addresses');
  if (backendType === 'memory' && !config.roles.includes('api'))
    throw new ConfigError(
      'the memory backend lives inside one process: run `adagiod` (both roles), not `adagiod agent` alone',
    );
  if (backendType === 'remote' && !config.remote.address)
    throw new ConfigError('-backend-type remote needs -api-address (or ADAGIOD_API_ADDRESS)');
  if (config.remote.address && !/^https?:\/\/[^/]+\/?$/i.test(config.remote.address))
    throw new ConfigError(`-api-address must be http://host:port, got "${config.remote.address}"`);
  if (backendType === 'remote' && config.roles.includes('api'))
    throw new ConfigError(
      '-backend-type remote runs agents against another adagiod: use `adagiod agent`, not the api role',
    );
  if (!!config.etcd.certFile !== !!config.etcd.keyFile)
    throw new ConfigError('-etcd-cert-file and -etcd-key-file go together');
  if (config.roles.includes('api') && config.tokens.length === 0 && !isLoopbackHost(listen.host))
    throw new ConfigError(
      `-listen ${v.string('listen')} reaches beyond this machine: set -api-token (and -agent-token for agents), ` +
        'or listen on 127.0.0.1 (docs/security.md)',
    );
  if (config.runtimes.length === 0 && config.roles.includes('agent'))
    throw new ConfigError('-runtimes must name at least one runtime for the agent role');
  return config;
}

export function envName(option: string): string {
  return `ADAGIOD_${option.toUpperCase().replace(/-/g, '_')}`;
}

function readConfigFile(path: string): RawValues {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(
      `cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  let table: Record<string, unknown>;
  try {
    table = parseToml(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid TOML: ${(e as Error).message.split('\n')[0]}`);
  }
  const known = new Set(OPTIONS.map((o) => o.name));
  const out: RawValues = {};
  for (const [key, value] of Object.entries(table)) {
    if (!known.has(key)) throw new ConfigError(`config file ${path}: unknown key "${key}"`);
    if (Array.isArray(value)) {
      if (!value.every((x) => ['string', 'number', 'boolean'].includes(typeof x)))
        throw new ConfigError(`config file ${path}: "${key}" must be a list of strings`);
      out[key] = value.map(String).join(',');
    } else if (['string', 'number', 'boolean'].includes(typeof value)) out[key] = String(value);
    else throw new ConfigError(`config file ${path}: "${key}" must be a string, number, boolean or list`);
  }
  return out;
}

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new ConfigError(`-listen must be host:port, got "${text}"`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** Slots of one agent process, at most: one registered agent each. */
const MAX_AGENTS = 10_000;
/** Claimed-ahead nodes one agent process may hold, at most. */
const MAX_CLAIM_AHEAD = 1_000_000;

function formatDays(ms: number): string {
  return `${Math.floor(ms / 86_400_000)} days (${ms} ms)`;
}

/** Typed reads of the merged raw values, each naming the option on error. */
class Values {
  constructor(private readonly raw: RawValues) {}

  string(name: string): string | undefined {
    const v = this.raw[name];
    return v === undefined || v === '' ? undefined : v;
  }

  list(name: string): string[] {
    return (this.raw[name] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  }

  choice(name: string): string {
    const def = OPTIONS.find((o) => o.name === name)!;
    const v = this.raw[name] ?? '';
    if (!def.choices?.includes(v))
      throw new ConfigError(`-${name} must be one of ${def.choices?.join(', ')}; got "${v}"`);
    return v;
  }

  int(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw[name] ?? '';
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
      throw new ConfigError(
        `-${name} must be a whole number ${max < Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `>= ${min}`}; got "${v}"`,
      );
    return Number(v);
  }

  /** A duration of `minMs` to `maxMs` (by default a timer's limit, about 24 days: longer ones fire at once). */
  duration(name: string, minMs: number, maxMs = MAX_TIMER_MS): number {
    const v = this.raw[name] ?? '';
    let ms: number;
    try {
      ms = parseDuration(v);
    } catch (e) {
      if (e instanceof DurationError) throw new ConfigError(`-${name}: ${e.message}`);
      throw e;
    }
    if (ms < minMs) throw new ConfigError(`-${name} must be at least ${minMs} ms; got "${v}"`);
    if (ms > maxMs) throw new ConfigError(`-${name} must be at most ${formatDays(maxMs)}; got "${v}"`);
    return ms;
  }

  bool(name: string): boolean {
    const v = (this.raw[name] ?? '').toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return true;
    if (['false', '0', 'no', 'off'].includes(v)) return false;
    throw new ConfigError(`-${name} must be true or false; got "${v}"`);
  }
}
