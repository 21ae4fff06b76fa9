/**
 * TLS via the connection string: a private PostgreSQL that accepts TLS
 * connections only (hostssl in pg_hba.conf), with a certificate signed by a
 * CA made for this test. The repository's pooled and LISTEN connections all
 * use TLS when the URL says `sslmode=verify-full&sslrootcert=…`, a URL
 * without TLS is refused, and a CA that did not sign the server's
 * certificate fails verification.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresRepository } from '../../src/backends/postgres/index.js';
import type { NodeEvent } from '../../src/protocol/index.js';
import { freePort, requirePostgres } from '../support/postgres.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';
const asRoot = process.getuid?.() === 0;

function run(cmd: string, args: string[], asPostgres = false): void {
  const [c, a] = asPostgres && asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(c, a as string[], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args[0]} failed: ${r.stderr || r.stdout || r.error?.message}`);
}

/** A CA, and a server certificate it signed for localhost / 127.0.0.1; plus an unrelated CA. */
function makeCertificates(dir: string): void {
  const openssl = (...args: string[]) => run('openssl', args);
  const selfSigned = (cn: string, base: string) =>
    openssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      join(dir, `${base}.key`),
      '-out',
      join(dir, `${base}.crt`),
    );
  selfSigned('adagio test CA', 'ca');
  selfSigned('someone else', 'other');
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    join(dir, 'server.key'),
    '-out',
    join(dir, 'server.csr'),
  );
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    join(dir, 'server.csr'),
    '-CA',
    join(dir, 'ca.crt'),
    '-CAkey',
    join(dir, 'ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    join(dir, 'ext.cnf'),
    '-out',
    join(dir, 'server.crt'),
  );
}

describe('PostgreSQL over TLS', () => {
  let dir: string;
  let port: number;
  const data = () => join(dir, 'data');
  const url = (params: string) => `postgres://postgres@127.0.0.1:${port}/postgres${params}`;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'adagio-pg-tls-'));
    port = await freePort();
    makeCertificates(dir);
    const pgdir = join(dir, 'pg');
    mkdirSync(pgdir);
    for (const f of ['server.crt', 'server.key']) execFileSync('cp', [join(dir, f), join(pgdir, f)]);
    chmodSync(join(pgdir, 'server.key'), 0o600);
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
      chownSync(dir, uid, gid);
      for (const p of [pgdir, join(pgdir, 'server.crt'), join(pgdir, 'server.key')]) chownSync(p, uid, gid);
    }
    run(
      join(PG_BIN, 'initdb'),
      ['-D', data(), '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'],
      true,
    );
    // TLS or nothing: plain TCP connections match no line and are refused.
    writeFileSync(join(data(), 'pg_hba.conf'), 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n');
    if (asRoot) run('chown', ['postgres:postgres', join(data(), 'pg_hba.conf')]);
    const options = [
      `-p ${port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories=${dir}`,
      '-c fsync=off',
      '-c ssl=on',
      `-c ssl_cert_file=${join(pgdir, 'server.crt')}`,
      `-c ssl_key_file=${join(pgdir, 'server.key')}`,
    ].join(' ');
    run(
      join(PG_BIN, 'pg_ctl'),
      ['start', '-D', data(), '-w', '-t', '30', '-l', join(dir, 'log'), '-o', options],
      true,
    );
    await requirePostgres(url(`?sslmode=verify-full&sslrootcert=${join(dir, 'ca.crt')}`));
  });

  after(() => {
    if (!dir) return;
    spawnSync(asRoot ? 'runuser' : join(PG_BIN, 'pg_ctl'), [
      ...(asRoot ? ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl')] : []),
      'stop',
      '-D',
      data(),
      '-m',
      'immediate',
      '-w',
    ]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('every connection of the repository uses TLS, certificate verified', { timeout: 60_000 }, async () => {
    const repo = await PostgresRepository.connect({
      connectionString: url(`?sslmode=verify-full&sslrootcert=${join(dir, 'ca.crt')}`),
      schema: 'adagio_tls',
      reaperIntervalMs: 0,
    });
    const ac = new AbortController();
    try {
      const events: NodeEvent[] = [];
      const sub = (async () => {
        for await (const e of repo.subscribe({ runtimes: ['x'], signal: ac.signal })) events.push(e);
      })();
      const run1 = await repo.start({
        nodes: [{ name: 'a', runtime: 'x', metadata: {}, retry: {} }],
        edges: [],
      });
      const deadline = Date.now() + 20_000;
      while (!events.some((e) => e.runId === run1.id)) {
        assert.ok(Date.now() < deadline, 'NODE_READY over the TLS LISTEN connection');
        await new Promise((r) => setTimeout(r, 20));
      }
      // Ask the server: which of adagio's connections are encrypted?
      const check = new pg.Client({ host: dir, port, user: 'postgres', database: 'postgres' });
      await check.connect();
      try {
        const { rows } = await check.query<{ application_name: string; ssl: boolean }>(
          `SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
           WHERE a.application_name LIKE 'adagio%'`,
        );
        assert.ok(
          rows.some((r) => r.application_name.startsWith('adagio-listen')),
          'the LISTEN connection',
        );
        assert.ok(
          rows.some((r) => r.application_name === 'adagio'),
          'pooled connections',
        );
        assert.deepEqual(
          rows.filter((r) => !r.ssl),
          [],
          'no connection without TLS',
        );
      } finally {
        await check.end();
      }
      ac.abort();
      await sub;
    } finally {
      ac.abort();
      await repo.close();
    }
  });

  it('without TLS the server refuses; with the wrong CA verification fails', {
    timeout: 60_000,
  }, async () => {
    await assert.rejects(
      PostgresRepository.connect({
        connectionString: url('?sslmode=disable'),
        schema: 'adagio_tls',
        retryForMs: 0,
      }),
      /no pg_hba.conf entry|SSL off/,
    );
    await assert.rejects(
      PostgresRepository.connect({
        connectionString: url(`?sslmode=verify-full&sslrootcert=${join(dir, 'other.crt')}`),
        schema: 'adagio_tls',
        retryForMs: 0,
      }),
      /certificate/i,
    );
  });
});
