/**
 * The dual-protocol listener hands sockets to the HTTP/1 and HTTP/2 servers
 * itself, so Node's own header and request timeouts never start: it times
 * out a connection that sends nothing, a half-sent HTTP/2 preface and a
 * half-sent HTTP/1 request itself, and leaves a request whose headers are in
 * alone however long its response idles (watches and subscriptions do).
 */
import assert from 'node:assert/strict';
import { createServer as createHttp1Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import { connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { dualProtocolListener } from '../../src/api/listener.js';

const OPENING_MS = 300;

describe('dual-protocol listener timeouts', () => {
  let server: Server;
  let port: number;
  before(async () => {
    const h1 = createHttp1Server((_req, res) => {
      // A long-idle stream: headers now, a line after three opening timeouts, then the end.
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('open\n');
      setTimeout(() => res.end('still here\n'), 3 * OPENING_MS);
    });
    const h2 = createHttp2Server();
    server = dualProtocolListener(h1, h2, OPENING_MS);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  /** Resolves with how long the server took to close the socket (or rejects after `ms`). */
  const closedWithin = (socket: Socket, ms: number) =>
    new Promise<number>((resolve, reject) => {
      const from = Date.now();
      const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve(Date.now() - from);
      });
      socket.on('error', () => {});
    });

  it('closes a connection that sends nothing, a half preface, or half a request', async () => {
    for (const opening of ['', 'PRI * HTTP/2', 'GET / HTTP/1.1\r\nHost: x\r\n']) {
      const socket = connect(port, '127.0.0.1');
      await new Promise((r) => socket.once('connect', r));
      if (opening) socket.write(opening);
      const took = await closedWithin(socket, 10 * OPENING_MS + 5_000);
      assert.ok(took >= OPENING_MS - 50, `${JSON.stringify(opening)}: closed after ${took} ms`);
    }
  });

  it('leaves a request whose headers are in alone while its response idles', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    let body = '';
    socket.on('data', (c) => (body += c));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await closedWithin(socket, 10_000 + 3 * OPENING_MS);
    assert.match(body, /open\n[\s\S]*still here/, body);
  });
});
