/**
 * JSON bodies of the retry and workflow routes refuse what they would otherwise silently ignore: a field the
 * route does not know, and a workflow file's `name` that is not the one in the path.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';

describe('JSON bodies: no silently ignored fields', () => {
  let store: MemoryRepository;
  let server: ApiServer;
  let address: string;
  before(async () => {
    store = new MemoryRepository();
    server = new ApiServer({ repository: store, ui: false });
    address = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close(500);
    await store.close();
  });

  const send = async (method: string, path: string, body: unknown) => {
    const res = await fetch(`${address}${path}`, {
      method,
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
  };
  const spec = { nodes: [{ name: 'a', runtime: 'debug' }], edges: [] };

  it('POST /v0/runs/{id}/retry refuses a field other than nodes, naming it, and changes nothing', async () => {
    const run = await store.start({
      nodes: [{ name: 'a', runtime: 'debug', metadata: {}, retry: {} }],
      edges: [],
    });
    await store.cancel(run.id);
    const res = await send('POST', `/v0/runs/${run.id}/retry`, { node: ['a'] });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.match(res.body.message ?? '', /"node"/);
    assert.equal((await store.inspect(run.id)).status, 'COMPLETED');
    const ok = await send('POST', `/v0/runs/${run.id}/retry`, { nodes: ['a'] });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  it('POST /v0/runs/{id}/retry refuses a body that is not an object (a bare list would have retried every node)', async () => {
    const run = await store.start({
      nodes: ['a', 'b'].map((name) => ({ name, runtime: 'debug', metadata: {}, retry: {} })),
      edges: [],
    });
    // Both failed: a plain retry would put both back, a retry naming a only a.
    const lease = await store.grantLease(60_000);
    for (const node of ['a', 'b']) {
      const c = await store.claim({ runId: run.id, node, leaseId: lease.id, agentId: 't' });
      await store.finish({ runId: run.id, node, claimId: c!.claimId, conclusion: 'FAIL' });
    }
    for (const body of [['a'], 'a', 3, null]) {
      const res = await send('POST', `/v0/runs/${run.id}/retry`, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.message ?? '', /retry body must be \{"nodes"/);
    }
    assert.equal((await store.inspect(run.id)).status, 'COMPLETED', 'nothing was retried');
    const ok = await send('POST', `/v0/runs/${run.id}/retry`, { nodes: ['a'] });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const after = await store.inspect(run.id);
    assert.deepEqual(
      after.nodes.map((n) => n.status),
      ['READY', 'COMPLETED'],
      'only the named node',
    );
  });

  it('PUT /v0/workflows/{name} refuses a body whose name is another workflow, and stores nothing', async () => {
    const res = await send('PUT', '/v0/workflows/alpha', { name: 'beta', spec });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.match(res.body.message ?? '', /"beta".*"alpha"|"alpha".*"beta"/);
    assert.equal((await send('GET', '/v0/workflows/alpha', undefined)).status, 404);
    const same = await send('PUT', '/v0/workflows/alpha', { name: 'alpha', spec });
    assert.equal(same.status, 200, JSON.stringify(same.body));
  });
});
