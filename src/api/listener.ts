import type { Server as Http1Server } from 'node:http';
import type { Http2Server } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';

/** What every HTTP/2 cleartext (h2c, "prior knowledge") connection starts with; gRPC clients use it. */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n');

/**
 * One TCP port for HTTP/1.1 and HTTP/2 cleartext. Node's plaintext http2
 * server cannot take HTTP/1.1 (allowHTTP1 is TLS-only in Node 20), yet
 * browsers and curl speak 1.1 and gRPC clients speak h2c: so the first bytes
 * of each connection pick the server, and are handed back unread.
 */
export function dualProtocolListener(h1: Http1Server, h2: Http2Server): Server {
  return createServer((socket: Socket) => {
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
      (matches ? h2 : h1).emit('connection', socket);
    };
    socket.on('readable', onReadable);
    socket.on('error', () => socket.destroy());
  });
}
