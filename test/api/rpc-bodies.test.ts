/**
 * RPC request bodies the server reads itself before connect-es (binary
 * Connect and gRPC requests are parsed first, to answer a malformed one
 * INVALID_ARGUMENT) are held to -max-body-bytes as they arrive: a chunked
 * body states no length up front, and one of hundreds of MB, sent without a
 * token, ran the daemon out of memory. A gRPC body of many envelopes is
 * refused as such rather than split into millions of messages.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';

const MAX = 64 * 1024;

/** POSTs `total` zero bytes in 16 KiB chunks (no Content-Length), stopping early if the server answers. */
function chunkedPost(address: string, path: string, type: string, total: number) {
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; sent: number }>(
    (resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = http.request(
        `${address}${path}`,
        { method: 'POST', headers: { 'Content-Type': type } },
        (res) => {
          answered = true;
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, sent }));
        },
      );
      req.on('error', (e) => (answered ? undefined : reject(e)));
      const chunk = Buffer.alloc(16 * 1024);
      const pump = () => {
        while (!answered && sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    },
  );
}

describe('RPC bodies the server reads itself are held to the body limit', () => {
  const store = new MemoryRepository();
  const server = new ApiServer({ repository: store, ui: false, maxBodyBytes: MAX, tokens: ['t'] });
  let address: string;
  before(async () => {
    address = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close(200);
    await store.close();
  });

  it('a chunked binary Connect body past the limit is refused 413, without being read whole', async () => {
    const r = await chunkedPost(
      address,
      '/adagio.rpc.controlplane.ControlPlane/Start',
      'application/proto',
      64 * MAX,
    );
    assert.equal(r.status, 413, r.body);
    assert.match(r.body, /too_large/);
    assert.ok(r.sent < 64 * MAX, `answered after ${r.sent} bytes`);
  });

  it('a chunked gRPC-Web body past the limit is refused RESOURCE_EXHAUSTED; many envelopes INVALID_ARGUMENT', async () => {
    const big = await chunkedPost(
      address,
      '/adagio.rpc.controlplane.ControlPlane/Start',
      'application/grpc-web+proto',
      64 * MAX,
    );
    assert.equal(big.headers['grpc-status'], '8', JSON.stringify(big.headers));
    const many = await chunkedPost(
      address,
      '/adagio.rpc.controlplane.ControlPlane/Start',
      'application/grpc-web+proto',
      MAX / 2,
    );
    assert.equal(many.headers['grpc-status'], '3', JSON.stringify(many.headers));
    assert.match(decodeURIComponent(String(many.headers['grpc-message'])), /more than one request message/);
  });
});
