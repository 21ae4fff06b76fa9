import type { Server as Http1Server, IncomingMessage } from 'node:http';
import type { Http2Server, ServerHttp2Session } from 'node:http2';
import { createServer, type Server, type Socket } from 'node:net';

/** A connection's time to send its first bytes (and, HTTP/1, its first request's headers): generous for a client. */
const OPENING_TIMEOUT_MS = 30_000;

/** An HTTP/1 request's time to send its whole body once its headers are in (a body trickled forever held its socket). */
const BODY_TIMEOUT_MS = 60_000;

/** How long an HTTP/2 session may stay open with no stream: gRPC clients reconnect on their own after a GOAWAY. */
const IDLE_SESSION_MS = 5 * 60_000;

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
  timeouts: {
    /** How long a connection may take to send its first bytes, and an HTTP/1 one its first request's headers. */
    openingMs?: number;
    /** How long an HTTP/1 request may take to send its body once its headers are in. */
    bodyMs?: number;
    /** How long an HTTP/2 session may stay open without a stream. */
    idleSessionMs?: number;
  } = {},
): Server {
  const openingTimeoutMs = timeouts.openingMs ?? OPENING_TIMEOUT_MS;
  const bodyMs = timeouts.bodyMs ?? BODY_TIMEOUT_MS;
  const idleSessionMs = timeouts.idleSessionMs ?? IDLE_SESSION_MS;
  // Sockets handed over with emit('connection') never start Node's own header and request timeouts (those run
  // for a server that listens itself): without this, a silent or half-sent connection was held for good. Once an
  // HTTP/1 request's headers are in, its socket has no idle timeout (watches and subscriptions may idle for long),
  // but its body must be in within bodyMs; Node's keep-alive timeout closes it idle between requests.
  h1.on('request', (req: IncomingMessage) => {
    req.socket.setTimeout(0);
    if (req.complete) return;
    const timer = setTimeout(() => {
      if (!req.complete) req.socket.destroy();
    }, bodyMs);
    timer.unref();
    // On the request, not its socket: a keep-alive socket carries many requests, and a listener added to it per
    // request piled up for the connection's life.
    const clear = () => clearTimeout(timer);
    req.once('end', clear);
    req.once('close', clear);
  });
  // A session with no stream open for idleSessionMs is closed (GOAWAY; a stream in progress finishes). Without
  // this, sessions nobody used were held for good, each a socket and its buffers.
  h2.on('session', (session: ServerHttp2Session) => {
    let open = 0;
    let timer: NodeJS.Timeout | undefined;
    const arm = () => {
      timer = setTimeout(() => session.close(), idleSessionMs);
      timer.unref();
    };
    session.on('stream', (stream) => {
      open++;
      clearTimeout(timer);
      stream.once('close', () => {
        if (--open === 0 && !session.closed && !session.destroyed) arm();
      });
    });
    session.once('close', () => clearTimeout(timer));
    arm();
  });
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
