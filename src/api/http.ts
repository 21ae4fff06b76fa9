import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import { InvalidArgumentError, TooLargeError } from '../protocol/errors.js';

/** The server runs HTTP/1.1 and HTTP/2 (h2c) on one port; handlers see either. */
export type Req = IncomingMessage | Http2ServerRequest;
export type Res = ServerResponse | Http2ServerResponse;

/** The request body as UTF-8 text, refused past `maxBytes` (413) or when not valid UTF-8 (400). */
export async function readText(req: Req, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new InvalidArgumentError('request body is not valid UTF-8');
  }
}

export async function readJson(req: Req, maxBytes: number): Promise<unknown> {
  const text = await readText(req, maxBytes);
  if (text.trim() === '') throw new InvalidArgumentError('request body is empty; expected JSON');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidArgumentError(`request body is not valid JSON: ${(e as Error).message}`);
  }
}

function tooLarge(maxBytes: number): TooLargeError {
  return new TooLargeError(`request body exceeds the limit of ${maxBytes} bytes`);
}

export function sendJson(
  res: Res,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendText(res: Res, status: number, text: string, type = 'text/plain; charset=utf-8'): void {
  (res as ServerResponse).writeHead(status, {
    'Content-Type': type,
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

/**
 * Resolves once `out` has room again ('drain'), or at once when the client
 * is gone (`signal` aborted, possibly already; or the response destroyed),
 * so a streaming handler that waits here never outlives its client.
 */
export function drained(out: ServerResponse, signal: AbortSignal): Promise<void> {
  if (signal.aborted || out.destroyed || out.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      out.off('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    out.on('drain', done);
    out.on('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
