/**
 * The JSON API's NDJSON streams (GET /v0/agent/subscribe, GET /v0/runs/{id}/watch)
 * against a client that stops reading: the server waits for the socket to
 * drain, so it takes no more from the store than the socket holds (the
 * backlog stays in the store, as with the Connect stream), and a stalled
 * reader that disconnects ends its request.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import type { NodeEvent, Repository, SubscribeOptions } from '../../src/protocol/index.js';

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers.reverse()) await c();
});

/** A memory store that counts the events its subscriptions hand out. */
class Counting extends MemoryRepository {
  taken = 0;
  override subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const inner = super.subscribe(options);
    const self = this;
    return (async function* () {
      for await (const e of inner) {
        self.taken++;
        yield e;
      }
    })();
  }
}

async function serve(repository: Repository): Promise<{ server: ApiServer; port: number }> {
  const server = new ApiServer({ repository, ui: false });
  const address = await server.listen('127.0.0.1', 0);
  closers.push(() => server.close(200));
  return { server, port: Number(new URL(address).port) };
}

/** A client that sends a GET and never reads the answer. */
function stalled(port: number, path: string): net.Socket {
  const sock = net.connect(port, '127.0.0.1');
  sock.pause();
  sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
  return sock;
}

describe('NDJSON streams and a client that stops reading', () => {
  it('subscribe takes no more from the store than the socket holds', async () => {
    const store = new Counting();
    closers.push(() => store.close());
    // More than the sockets' buffers hold (a few MB on loopback, some 100 bytes an event).
    const n = 120_000;
    for (let r = 0; r < 6; r++)
      await store.start({
        nodes: Array.from({ length: n / 6 }, (_, i) => ({
          name: `n${i}`,
          runtime: 'x',
          metadata: {},
          retry: {},
        })),
        edges: [],
      });
    const { port } = await serve(store);
    const sock = stalled(port, '/v0/agent/subscribe?runtime=x');
    try {
      const deadline = Date.now() + 10_000;
      while (store.taken === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 1_500));
      assert.ok(store.taken > 0, 'the stream started');
      assert.ok(
        store.taken < n / 2,
        `${store.taken} of ${n} events taken from the store for a client reading none`,
      );
    } finally {
      sock.destroy();
    }
  });

  it('a watch whose reader stalled and then disconnected ends its request', async () => {
    const store = new MemoryRepository();
    closers.push(() => store.close());
    const { server, port } = await serve(store);
    const finishedWatches = async () => {
      const text = await server.metrics.registry.getSingleMetricAsString(
        'adagio_api_request_duration_seconds',
      );
      const line = text.split('\n').find((l) => l.includes('_count') && l.includes('route="json.watch"'));
      return Number(line?.split(' ').at(-1) ?? 0);
    };
    const nodes = 10;
    const run = await store.start({
      nodes: Array.from({ length: nodes }, (_, i) => ({
        name: `n${i}`,
        runtime: 'x',
        metadata: {},
        retry: {},
      })),
      edges: [],
    });
    const sock = stalled(port, `/v0/runs/${run.id}/watch`);
    await new Promise((r) => setTimeout(r, 200));
    // Events far larger than the socket's buffers: the server is left waiting for a drain with more queued.
    const lease = await store.grantLease(60_000);
    const big = new Uint8Array(900 * 1024).fill(65);
    for (let i = 0; i < nodes - 1; i++) {
      const c = await store.claim({ runId: run.id, node: `n${i}`, leaseId: lease.id, agentId: 'a' });
      await store.finish({
        runId: run.id,
        node: `n${i}`,
        claimId: c!.claimId,
        conclusion: 'SUCCESS',
        output: big,
      });
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await finishedWatches(), 0, 'the watch is open');
    sock.destroy();
    const deadline = Date.now() + 10_000;
    while ((await finishedWatches()) === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(await finishedWatches(), 1, 'the request ended once its client was gone');
    await store.revokeLease(lease.id);
  });
});
