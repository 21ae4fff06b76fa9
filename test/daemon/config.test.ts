/**
 * adagiod's configuration: precedence flag > env > TOML file > default,
 * both flag spellings, and one clear line with exit 2 for bad configuration.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig } from '../../src/daemon/config.js';
import { keepRoleAfterBoolFlag, normalizeArgv } from '../../src/daemon/main.js';
import { ADAGIOD, REPO_ROOT } from '../support/daemon.js';

const dir = mkdtempSync(join(tmpdir(), 'adagiod-config-'));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function adagiod(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [ADAGIOD, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, stderr: r.stderr, stdout: r.stdout };
}

describe('adagiod configuration', () => {
  it('precedence: flag over env over file over default', () => {
    const toml = file(
      'a.toml',
      'backend-type = "etcd"\netcd-addresses = "http://10.0.0.1:2379"\nagents = 7\nlisten = "127.0.0.1:1234"\n',
    );
    const fromFile = resolveConfig([], {}, {}, toml);
    assert.equal(fromFile.backendType, 'etcd');
    assert.deepEqual(fromFile.etcd.addresses, ['http://10.0.0.1:2379']);
    assert.equal(fromFile.agents, 7);
    assert.deepEqual(fromFile.listen, { host: '127.0.0.1', port: 1234 });
    assert.equal(fromFile.leaseTtlMs, 10_000, 'default');

    const env = { ADAGIOD_AGENTS: '9', ADAGIOD_ETCD_ADDRESSES: 'http://a:1,http://b:2' };
    const fromEnv = resolveConfig([], {}, env, toml);
    assert.equal(fromEnv.agents, 9);
    assert.deepEqual(fromEnv.etcd.addresses, ['http://a:1', 'http://b:2']);
    assert.equal(fromEnv.backendType, 'etcd', 'the file still fills what env leaves');

    const fromFlag = resolveConfig(
      ['agent'],
      { agents: '2', 'backend-type': 'postgres', 'postgres-url': 'postgres://x/y' },
      env,
      toml,
    );
    assert.equal(fromFlag.agents, 2);
    assert.equal(fromFlag.backendType, 'postgres');
    assert.deepEqual(fromFlag.roles, ['agent']);
  });

  it('an empty ADAGIOD_* variable is unset: the file (or default) still applies', () => {
    const toml = file('token.toml', 'api-token = "s3cret"\nagents = 7\n');
    // Taken as set, the empty variable dropped the file's token: the API served without one.
    const token = resolveConfig([], {}, { ADAGIOD_API_TOKEN: '' }, toml);
    assert.deepEqual(token.tokens, ['s3cret']);
    const others = resolveConfig([], {}, { ADAGIOD_AGENTS: '', ADAGIOD_LOG_LEVEL: '' }, toml);
    assert.equal(others.agents, 7);
    assert.equal(others.logLevel, 'info', 'the default');
  });

  it('DynamoDB: table, region and endpoint from flags, env (ADAGIOD_DYNAMODB_*) and TOML', () => {
    const toml = file(
      'd.toml',
      'backend-type = "dynamodb"\ndynamodb-table = "from-file"\ndynamodb-region = "eu-west-1"\n',
    );
    const fromFile = resolveConfig([], {}, {}, toml);
    assert.equal(fromFile.backendType, 'dynamodb');
    assert.deepEqual(fromFile.dynamodb, { table: 'from-file', region: 'eu-west-1', endpoint: undefined });
    const env = { ADAGIOD_DYNAMODB_ENDPOINT: 'http://127.0.0.1:8000', ADAGIOD_DYNAMODB_TABLE: 'from-env' };
    const fromEnv = resolveConfig([], {}, env, toml);
    assert.deepEqual(fromEnv.dynamodb, {
      table: 'from-env',
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:8000',
    });
    const fromFlag = resolveConfig([], { 'dynamodb-table': 'from-flag' }, env, toml);
    assert.equal(fromFlag.dynamodb.table, 'from-flag');
    assert.equal(resolveConfig([], {}, {}, undefined).dynamodb.table, 'adagio', 'the default table');
  });

  it('both roles when neither is named', () => {
    assert.deepEqual(resolveConfig([], {}, {}, undefined).roles, ['api', 'agent']);
  });

  it('bad values name the option', () => {
    const bad: [Record<string, string>, RegExp][] = [
      [{ 'backend-type': 'mysql' }, /backend-type must be one of memory, etcd, postgres/],
      [{ agents: 'lots' }, /agents must be a whole number/],
      [{ 'claim-ahead': '-1' }, /claim-ahead must be a whole number from 0 to 1000000; got "-1"/],
      [{ agents: '99999999999999999999999' }, /agents must be a whole number from 1 to 10000/],
      [{ 'grace-period': '600h' }, /grace-period must be at most 24 days/],
      [{ 'lease-ttl': '2000h' }, /lease-ttl must be at most 24 days/],
      [{ 'claim-ahead': 'abc' }, /claim-ahead must be a whole number from 0/],
      [{ 'lease-ttl': '10' }, /lease-ttl.*not a duration/],
      [{ listen: 'localhost' }, /listen must be host:port/],
      [{ 'backend-type': 'postgres' }, /needs -postgres-url/],
      [{ 'cors-origins': '*' }, /-cors-origins \* lets any web page call this API: it needs -api-token/],
    ];
    for (const [flags, message] of bad)
      assert.throws(
        () => resolveConfig([], flags, {}, undefined),
        (e: Error) => e instanceof ConfigError && message.test(e.message),
      );
    assert.throws(
      () => resolveConfig([], {}, {}, file('bad.toml', 'nonsense = 1\n')),
      /unknown key "nonsense"/,
    );
    assert.throws(() => resolveConfig([], {}, {}, file('broken.toml', 'agents = \n')), /not valid TOML/);
    // A list holding a table (or a list) is refused, not turned into text or a crash.
    for (const toml of ['runtimes = [{a=1}]\n', 'runtimes = [["exec", "debug"], 3]\n'])
      assert.throws(
        () => resolveConfig([], {}, {}, file('list.toml', toml)),
        (e: Error) => e instanceof ConfigError && /"runtimes" must be a list of strings/.test(e.message),
      );
    // Retention compares run ages, no timer: a year is fine.
    assert.equal(resolveConfig([], { retention: '8760h' }, {}, undefined).retentionMs, 8760 * 3_600_000);
    assert.throws(() => resolveConfig([], {}, {}, join(dir, 'missing.toml')), /cannot read config file/);
  });

  it('a connection URL is logged without its password, however it is written', async () => {
    const { redactUrl } = await import('../../src/daemon/backend.js');
    const cases: [string, string][] = [
      ['postgres://adagio:s3cret@db/adagio', 'postgres://adagio:***@db/adagio'],
      ['postgres://:s3cret@db/adagio', 'postgres://:***@db/adagio'],
      ['postgres://adagio:s3c@ret@db/adagio', 'postgres://adagio:***@db/adagio'],
      ['postgres://db/x?sslmode=require&password=zz', 'postgres://db/x?sslmode=require&password=***'],
      ['postgres://user@db/x', 'postgres://user@db/x'],
    ];
    for (const [url, logged] of cases) assert.equal(redactUrl(url), logged, url);
    assert.ok(
      resolveConfig([], { 'cors-origins': '*', 'api-token': 't' }, {}, undefined).corsOrigins.includes('*'),
    );
  });

  it('Go-style single-dash long flags are read like double-dash ones', () => {
    assert.deepEqual(
      normalizeArgv(['-backend-type', 'etcd', '-etcd-addresses=http://x', '-h', '--listen', 'a:1', 'api']),
      ['--backend-type', 'etcd', '--etcd-addresses=http://x', '-h', '--listen', 'a:1', 'api'],
    );
  });

  it('a role right after a bool flag stays the role', () => {
    assert.deepEqual(keepRoleAfterBoolFlag(['--example', 'api']), ['--example=true', 'api']);
    assert.deepEqual(keepRoleAfterBoolFlag(['--ui', 'false', 'agent']), ['--ui', 'false', 'agent']);
    assert.deepEqual(keepRoleAfterBoolFlag(['--listen', 'api']), ['--listen', 'api'], 'not a bool flag');
    // The role decides: the memory backend refuses the agent role alone (before, "-example must be true or false").
    const r = adagiod(['-example', 'agent']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^adagiod: the memory backend lives inside one process/m);
  });

  it('the binary: unknown backend, unknown role, bad config → one line and exit 2; --help exits 0', () => {
    const unknown = adagiod(['-backend-type', 'mysql']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^adagiod: .*mysql/m);
    assert.doesNotMatch(unknown.stderr, /\n\s+at /, 'no stack trace');
    const role = adagiod(['scheduler']);
    assert.equal(role.code, 2);
    assert.match(role.stderr, /unknown role "scheduler"/);
    const env = adagiod([], { ADAGIOD_LEASE_TTL: 'soon' });
    assert.equal(env.code, 2);
    assert.match(env.stderr, /lease-ttl/);
    const cfg = adagiod(['-config', join(dir, 'nope.toml')]);
    assert.equal(cfg.code, 2);
    assert.match(cfg.stderr, /cannot read config file/);
    const agentOnly = adagiod(['agent']);
    assert.equal(agentOnly.code, 2);
    assert.match(agentOnly.stderr, /memory backend/);
    const help = adagiod(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /-backend-type|--backend-type/);
    assert.match(help.stdout, /ADAGIOD_BACKEND_TYPE/);
  });

  it('the binary: a port already taken → one line naming it and exit 2, before any agent starts', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = adagiod(['-listen', `127.0.0.1:${port}`], { ADAGIOD_LOG_LEVEL: 'info' });
      assert.equal(r.code, 2);
      assert.match(
        r.stderr,
        new RegExp(
          `^adagiod: cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use .*--listen$`,
          'm',
        ),
      );
      assert.doesNotMatch(r.stderr, /agents started/, 'no agent started');
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    } finally {
      taken.close();
    }
  });

  it('the binary: a backend that cannot be reached → one line and exit 1', () => {
    const r = adagiod(
      [
        '-backend-type',
        'postgres',
        '-postgres-url',
        'postgres://postgres@127.0.0.1:9/x',
        '-listen',
        '127.0.0.1:0',
      ],
      {
        ADAGIOD_LOG_LEVEL: 'error',
      },
    );
    assert.equal(r.code, 1);
    assert.match(r.stderr, /adagiod: /);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});
