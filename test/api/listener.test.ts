/**
 * The dual-protocol listener hands sockets to the HTTP/1 and HTTP/2 servers
 * itself, so Node's own header and request timeouts never start: it times
 * out a connection that sends nothing, a half-sent HTTP/2 preface and a
 * half-sent HTTP/1 request itself, and leaves a request whose headers are in
 * alone however long its response idles (watches and subscriptions do).
 */
import assert from 'node:assert/strict';
import {
  createServer as createHttp1Server,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
} from 'node:http';
import http2, { createServer as createHttp2Server } from 'node:http2';
import { connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { dualProtocolListener } from '../../src/api/listener.js';

const OPENING_MS = 300;
const BODY_MS = 3 * OPENING_MS;
const IDLE_SESSION_MS = 2 * OPENING_MS;

describe('dual-protocol listener timeouts', () => {
  let server: Server;
  let port: number;
  before(async () => {
    /** Answers as Node's HTTP/1 and HTTP/2 compatibility APIs both let it. */
    type Answer = {
      writeHead(status: number, headers: Record<string, string>): unknown;
      write(text: string): unknown;
      end(text: string): unknown;
    };
    const longIdle = (req: { url?: string }, res: Answer) => {
      // An upload: answered once its body is in (it never is, in the test).
      if (req.url === '/upload') return;
      // Answers, once its body is in, how many close listeners its connection's socket holds.
      if (req.url === '/listeners') {
        const r = req as unknown as IncomingMessage;
        r.resume();
        r.on('end', () => {
          res.writeHead(200, { 'Content-Type': 'text/plain' });
          res.end(String(r.socket.listenerCount('close')));
        });
        return;
      }
      // A long-idle stream: headers now, a line after three opening timeouts, then the end.
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('open\n');
      setTimeout(() => res.end('still here\n'), 3 * OPENING_MS);
    };
    const h1 = createHttp1Server((req, res) => longIdle(req, res));
    const h2 = createHttp2Server((req, res) => longIdle(req, res));
    server = dualProtocolListener(h1, h2, {
      openingMs: OPENING_MS,
      bodyMs: BODY_MS,
      idleSessionMs: IDLE_SESSION_MS,
    });
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

  it('keeps no listener per request on a keep-alive connection', async () => {
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const counts: number[] = [];
    for (let i = 0; i < 30; i++)
      counts.push(
        await new Promise<number>((resolve, reject) => {
          const req = httpRequest(
            {
              host: '127.0.0.1',
              port,
              path: '/listeners',
              method: 'POST',
              agent,
              headers: { 'Content-Length': 4 },
            },
            (res) => {
              let body = '';
              res.setEncoding('utf8');
              res.on('data', (c) => (body += c));
              res.on('end', () => resolve(Number(body)));
            },
          );
          req.on('error', reject);
          // The body after the headers: the request is not complete when it is handed over.
          req.write('ab');
          setTimeout(() => req.end('cd'), 5);
        }),
      );
    agent.destroy();
    assert.ok(counts[29]! <= counts[0]! + 1, `close listeners on the socket: ${counts.join(', ')}`);
  });

  it('closes an HTTP/1 connection whose request body does not arrive in time', async () => {
    const socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    // Headers in, then a trickle: a byte now and then, never the whole body.
    socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nx');
    const trickle = setInterval(() => socket.write('x'), OPENING_MS / 3);
    try {
      const took = await closedWithin(socket, 10 * BODY_MS + 5_000);
      assert.ok(took >= BODY_MS - 50, `closed after ${took} ms`);
    } finally {
      clearInterval(trickle);
    }
  });

  const sessionClosed = (session: http2.ClientHttp2Session) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('session still open after 10 s')), 10_000);
      session.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });

  it('closes an HTTP/2 session with no stream open, never while a stream is', async () => {
    // Never used: closed after the idle time.
    const unused = http2.connect(`http://127.0.0.1:${port}`);
    unused.on('error', () => {});
    const from = Date.now();
    await sessionClosed(unused);
    assert.ok(Date.now() - from >= IDLE_SESSION_MS - 50, `closed after ${Date.now() - from} ms`);

    // A stream open past the idle time finishes; the session closes once it has been idle after it.
    const used = http2.connect(`http://127.0.0.1:${port}`);
    used.on('error', () => {});
    const closed = sessionClosed(used);
    const stream = used.request({ ':path': '/' });
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (c) => (body += c));
    await new Promise((r) => stream.once('end', r));
    assert.match(body, /open\n[\s\S]*still here/, 'the stream outlived the idle time');
    const ended = Date.now();
    await closed;
    assert.ok(Date.now() - ended >= IDLE_SESSION_MS - 50, 'idle counted from the last stream');
  });
});
