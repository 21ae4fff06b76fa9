import type { Server as Http1Server } from 'node:http';
import type { Http2Server } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';

/** A connection's time to send its first bytes (and, HTTP/1, its first request's headers): generous for a client. */
const OPENING_TIMEOUT_MS = 30_000;

/** What every HTTP/2 cleartext (h2c, "prior knowledge") connection starts with; gRPC clients use it. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');

/**
 * One TCP port for HTTP/1.1 and HTTP/2 cleartext. Node's plaintext http2
 * server cannot take HTTP/1.1 (allowHTTP1 is TLS-only in Node 20), yet
 * browsers and curl speak 1.1 and gRPC clients speak h2c: so the first bytes
 * of each connection pick the server, and are handed back unread.
 */
export function dualProtocolListener(
  h1: Http1Server,
  h2: Http2Server,
  /** How long a connection may take to send its first bytes, and an HTTP/1 one its first request's headers. */
  openingTimeoutMs = OPENING_TIMEOUT_MS,
): Server {
  // Sockets handed over with emit('connection') never start Node's own header and request timeouts (those run
  // for a server that listens itself): without this, a silent or half-sent connection was held for good. Once an
  // HTTP/1 request's headers are in, its socket has no timeout (watches and subscriptions may idle for long), and
  // Node's keep-alive timeout closes it idle between requests.
  h1.on('request', (req: { socket: Socket }) => req.socket.setTimeout(0));
  return createServer((socket: Socket) => {
    socket.setTimeout(openingTimeoutMs, () => socket.destroy());
    let seen = Buffer.alloc(0);
    const onReadable = () => {
      let chunk: Buffer | null;
      // biome-ignore lint/suspicious/noAssignInExpressions: the read loop idiom
      while ((chunk = socket.read()) !== null) seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const matches = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (matches && seen.length < PREFACE.length) return; // a partial preface: wait for more
      socket.off('readable', onReadable);
      socket.unshift(seen);
      // HTTP/2 sessions have their own life (gRPC clients keep them); an HTTP/1 socket keeps the opening timeout
      // until its first request's headers are complete.
      if (matches) socket.setTimeout(0);
      (matches ? h2 : h1).emit('connection', socket);
    };
    socket.on('readable', onReadable);
    socket.on('error', () => socket.destroy());
  });
}
