/**
 * Bearer-token auth and a backend outage, on an in-process ApiServer over
 * real stores: the memory backend, and a PostgreSQL backend pointed at a
 * port where no server listens.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, type ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { PostgresRepository } from '../../src/backends/postgres/index.js';
import { AdagioClient, type ApiError } from '../../src/client/index.js';
import { ControlPlane } from '../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';

describe('API token', () => {
  const repository = new MemoryRepository();
  const server = new ApiServer({ repository, tokens: ['s3cret-people', 's3cret-agents'], ui: false });
  let address: string;
  before(async () => {
    address = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close();
    await repository.close();
  });

  it('JSON routes and /metrics refuse a missing or wrong token with 401', async () => {
    const attempts: Record<string, string>[] = [
      {},
      { Authorization: 'Bearer nope' },
      { Authorization: 's3cret-people' },
    ];
    for (const headers of attempts) {
      const res = await fetch(`${address}/v0/stats`, { headers });
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { code: string }).code, 'unauthenticated');
    }
    assert.equal((await fetch(`${address}/metrics`)).status, 401);
  });

  it('every accepted token works; health endpoints need none', async () => {
    for (const token of ['s3cret-people', 's3cret-agents']) {
      const res = await fetch(`${address}/v0/stats`, { headers: { Authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
    }
    assert.equal((await fetch(`${address}/healthz`)).status, 200);
    assert.equal((await fetch(`${address}/readyz`)).status, 200);
  });

  it('gRPC and the typed client: UNAUTHENTICATED without the token, served with it', async () => {
    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: address }));
    await assert.rejects(grpc.stats({}), (e: ConnectError) => e.code === Code.Unauthenticated);
    await assert.rejects(new AdagioClient({ address, token: '' }).stats(), (e: ApiError) => {
      assert.equal(e.code, 'unauthenticated');
      assert.match(e.message, /token/);
      return true;
    });
    const stats = await new AdagioClient({ address, token: 's3cret-people' }).stats();
    assert.equal(stats.runCount, 0);
  });
});

describe('CORS', () => {
  it('is off by default and answers only the configured origins', async () => {
    const repository = new MemoryRepository();
    const closed = new ApiServer({ repository, ui: false });
    const open = new ApiServer({ repository, ui: false, corsOrigins: ['https://ops.example'] });
    const [a, b] = [await closed.listen('127.0.0.1', 0), await open.listen('127.0.0.1', 0)];
    try {
      const preflight = (base: string, origin: string) =>
        fetch(`${base}/v0/stats`, {
          method: 'OPTIONS',
          headers: { Origin: origin, 'Access-Control-Request-Method': 'GET' },
        });
      const off = await preflight(a, 'https://ops.example');
      assert.equal(off.headers.get('access-control-allow-origin'), null);
      const on = await preflight(b, 'https://ops.example');
      assert.equal(on.status, 204);
      assert.equal(on.headers.get('access-control-allow-origin'), 'https://ops.example');
      assert.match(on.headers.get('access-control-allow-headers') ?? '', /Authorization/);
      const other = await preflight(b, 'https://evil.example');
      assert.equal(other.headers.get('access-control-allow-origin'), null);
      const get = await fetch(`${b}/v0/stats`, { headers: { Origin: 'https://ops.example' } });
      assert.equal(get.headers.get('access-control-allow-origin'), 'https://ops.example');
    } finally {
      await closed.close();
      await open.close();
      await repository.close();
    }
  });
});

describe('backend unreachable', () => {
  // A real PostgreSQL client against a closed port: every operation fails to connect.
  const repository = new PostgresRepository({
    connectionString: 'postgres://postgres@127.0.0.1:9/adagio',
    retryForMs: 300,
    reaperIntervalMs: 0,
  });
  const server = new ApiServer({ repository, ui: false });
  let address: string;
  before(async () => {
    address = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close();
    await repository.close().catch(() => {});
  });

  it('JSON routes answer 503 and gRPC UNAVAILABLE; /readyz is 503, /healthz 200', async () => {
    const res = await fetch(`${address}/v0/runs`);
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { code: string }).code, 'unavailable');
    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: address }));
    await assert.rejects(grpc.listRuns({}), (e: ConnectError) => e.code === Code.Unavailable);
    assert.equal((await fetch(`${address}/readyz`)).status, 503);
    assert.equal((await fetch(`${address}/healthz`)).status, 200);
  });

  it('the client names an address where nothing listens', async () => {
    await assert.rejects(new AdagioClient({ address: 'http://127.0.0.1:9' }).stats(), (e: ApiError) => {
      assert.equal(e.code, 'unavailable');
      assert.match(e.message, /cannot reach adagiod at http:\/\/127\.0\.0\.1:9/);
      return true;
    });
  });
});
