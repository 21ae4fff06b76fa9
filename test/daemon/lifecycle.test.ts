/**
 * adagiod's lifecycle on a shared store (PostgreSQL), so what the process did
 * can be checked after it exits: SIGTERM lets running work finish within the
 * grace period, deregisters the agents and exits 0; split roles work.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec } from '../../src/model/types.js';
import { startDaemon } from '../support/daemon.js';
import { POSTGRES_URL, postgresRepository } from '../support/postgres.js';

const sleepy = (ms: string): GraphSpec => ({
  nodes: [{ name: 'work', runtime: 'debug', metadata: { 'adagio.arguments.debug.sleep': [ms] }, retry: {} }],
  edges: [],
});

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('adagiod lifecycle (postgres backend)', () => {
  let store: Awaited<ReturnType<typeof postgresRepository>>;
  let backend: string[];
  before(async () => {
    store = await postgresRepository();
    backend = [
      '--backend-type',
      'postgres',
      '--postgres-url',
      POSTGRES_URL,
      '--postgres-schema',
      store.schema,
    ];
  });
  after(() => store.teardown());

  it('SIGTERM: stops claiming, lets running work finish, deregisters, exits 0', async () => {
    const d = await startDaemon([...backend, '--agents', '2', '--grace-period', '20s']);
    const client = new AdagioClient({ address: d.address });
    const run = await client.start(sleepy('1500ms'));
    await until('the node to run', async () =>
      (await store.repository.inspect(run.id)).nodes[0]!.status === 'RUNNING' ? true : undefined,
    );
    assert.equal((await store.repository.listAgents()).length, 2);
    const code = await d.stop('SIGTERM');
    assert.equal(code, 0, d.logs());
    const done = await store.repository.inspect(run.id);
    assert.equal(done.nodes[0]!.status, 'COMPLETED', 'the running attempt finished before exit');
    assert.equal(done.nodes[0]!.attempts[0]!.conclusion, 'SUCCESS');
    assert.deepEqual(await store.repository.listAgents(), [], 'agents deregistered');
    assert.match(d.logs(), /"msg":"shutting down"/);
  });

  it('secrets never reach the log: the API token and the database password', async () => {
    const url = POSTGRES_URL.replace('postgres://postgres@', 'postgres://postgres:pw-S3CRET@');
    const d = await startDaemon(
      [
        '--backend-type',
        'postgres',
        '--postgres-url',
        url,
        '--postgres-schema',
        store.schema,
        '--api-token',
        'tok-S3CRET',
      ],
      { env: { ADAGIOD_LOG_LEVEL: 'debug' } },
    );
    const client = new AdagioClient({ address: d.address, token: 'tok-S3CRET' });
    const run = await client.start(sleepy('10ms'));
    for await (const _ of client.watch(run.id)) {
      // until it completes, so the log has claims and finishes in it
    }
    assert.equal(await d.stop(), 0);
    assert.match(d.logs(), /"msg":"backend ready".*"url":"postgres:\/\/postgres:\*\*\*@/);
    assert.doesNotMatch(d.logs(), /S3CRET/);
  });

  it('split roles: an api process and an agent process share only the store', async () => {
    const api = await startDaemon(['api', ...backend]);
    const agent = await startDaemon(['agent', ...backend, '--agents', '3', '--runtimes', 'debug']);
    try {
      const client = new AdagioClient({ address: api.address });
      assert.deepEqual(
        (await client.listAgents()).map((a) => a.runtimes.map((r) => r.name)),
        [['debug'], ['debug'], ['debug']],
      );
      const run = await client.start(sleepy('10ms'));
      let last: string | undefined;
      for await (const ev of client.watch(run.id)) if (ev.type === 'node') last = ev.runConclusion;
      assert.equal(last, 'SUCCESS');
      assert.doesNotMatch(api.logs(), /agents started/, 'the api role runs no agents');
    } finally {
      assert.equal(await agent.stop('SIGINT'), 0);
      assert.equal(await api.stop('SIGTERM'), 0);
    }
  });
});
