/**
 * A daemon past -max-queued-nodes refuses starts as overloaded (429, retry
 * later), not as too large: over gRPC/Connect both are RESOURCE_EXHAUSTED,
 * so the server names its code beside it, and the TypeScript client, the
 * remote backend and the CLI (exit 3, the daemon refused; not 2, bad input)
 * tell them apart.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { RemoteRepository } from '../../src/backends/remote/index.js';
import { AdagioClient } from '../../src/client/index.js';
import { OverloadedError } from '../../src/protocol/errors.js';
import { cliInProcess } from './helpers.js';

const graph = (n: number) => ({
  nodes: Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime: 'debug', metadata: {}, retry: {} })),
  edges: [],
});

describe('overloaded is not too large', () => {
  const store = new MemoryRepository();
  const server = new ApiServer({ repository: store, ui: false, maxQueuedNodes: 2 });
  let address: string;
  let dir: string;
  before(async () => {
    address = await server.listen('127.0.0.1', 0);
    dir = await mkdtemp(join(tmpdir(), 'adagio-overloaded-'));
  });
  after(async () => {
    await server.close(200);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the client reports overloaded', async () => {
    const client = new AdagioClient({ address });
    await assert.rejects(client.start(graph(5)), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'overloaded', e.message);
      return true;
    });
  });

  it('the remote backend raises OverloadedError', async () => {
    const remote = new RemoteRepository({ address });
    try {
      await assert.rejects(remote.start(graph(5)), (e: Error) => {
        assert.ok(e instanceof OverloadedError, `${e.constructor.name}: ${e.message}`);
        return true;
      });
    } finally {
      await remote.close();
    }
  });

  it('adagio runs start exits 3 (the daemon refused), one line', async () => {
    const file = join(dir, 'five.json');
    await writeFile(file, JSON.stringify(graph(5)));
    const r = await cliInProcess(['runs', 'start', file], { env: { ADAGIO_ADDRESS: address } });
    assert.equal(r.code, 3, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^adagio: /);
  });
});
