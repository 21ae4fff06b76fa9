import { readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packageRoot } from '../package-root.js';

/**
 * Serves the built web UI (ui/dist) next to the API: `/`, `/assets/*`, the
 * favicon, and index.html for the app's own routes (`/runs`, `/runs/<id>`,
 * `/start`, `/workflows`, `/workflows/<name>`, `/schedules`, `/schedules/<name>`) so deep links and reloads work. Every other path is left to the
 * API (the handler returns false without touching the response).
 */
export interface UiHandlerOptions {
  /** The built UI; default `<package root>/ui/dist`, found from this file so it works from src/ and dist/. */
  distDir?: string;
}

export type UiHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * The UI's own code only: scripts, styles, the layout worker and API calls all
 * come from this origin; no inline script or style, no framing.
 */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "worker-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': UI_CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};
const COMPRESSIBLE = new Set(['.html', '.js', '.mjs', '.css', '.json', '.map', '.svg', '.txt']);

/** Client-side routes of the app (ui/src/App.tsx): they all get index.html. */
const APP_ROUTE = /^\/(?:runs(?:\/.*)?|workflows(?:\/.*)?|schedules(?:\/.*)?|start)$/;
/** Vite's output names: a flat directory of hashed files. Anything else under /assets/ is a 404. */
const ASSET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
/** Files copied from ui/public to the top of ui/dist. */
const TOP_LEVEL_FILES = new Set(['/favicon.svg']);

export function createUiHandler(options: UiHandlerOptions = {}): UiHandler {
  const distDir = options.distDir ?? join(packageRoot(), 'ui', 'dist');
  const cache = new Map<string, CachedFile>();

  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const path = (req.url ?? '/').split('?', 1)[0] ?? '/';
    let file: string;
    let immutable = false;
    if (path === '/' || path === '/index.html' || APP_ROUTE.test(path)) file = 'index.html';
    else if (TOP_LEVEL_FILES.has(path)) file = path.slice(1);
    else if (path.startsWith('/assets/')) {
      const name = path.slice('/assets/'.length);
      if (!ASSET_NAME.test(name)) {
        sendText(res, req, 404, 'not found');
        return true;
      }
      file = `assets/${name}`;
      immutable = true;
    } else return false;

    serve(distDir, file, immutable, cache, req, res).catch(() => {
      if (!res.headersSent) sendText(res, req, 500, 'could not read the UI files');
      else res.destroy();
    });
    return true;
  };
}

interface CachedFile {
  mtimeMs: number;
  size: number;
  body: Buffer;
  gzipped: Buffer | undefined;
}

async function serve(
  distDir: string,
  file: string,
  immutable: boolean,
  cache: Map<string, CachedFile>,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const full = join(distDir, file);
  const info = await stat(full).catch(() => undefined);
  if (!info?.isFile()) {
    if (file === 'index.html') sendNotBuilt(res, req, distDir);
    else sendText(res, req, 404, 'not found');
    return;
  }
  const ext = file.slice(file.lastIndexOf('.'));
  // Re-read when the file changed on disk (a rebuild while the daemon runs).
  let cached = cache.get(file);
  if (!cached || cached.mtimeMs !== info.mtimeMs || cached.size !== info.size) {
    const body = await readFile(full);
    cached = {
      mtimeMs: info.mtimeMs,
      size: info.size,
      body,
      gzipped: COMPRESSIBLE.has(ext) && body.byteLength > 1024 ? gzipSync(body) : undefined,
    };
    cache.set(file, cached);
  }

  const etag = `"${info.size.toString(16)}-${Math.floor(info.mtimeMs).toString(16)}"`;
  const headers: Record<string, string> = {
    ...SECURITY_HEADERS,
    'Content-Type': TYPES[ext] ?? 'application/octet-stream',
    // Hashed asset names change with their content; index.html must be revalidated to pick up a new build.
    'Cache-Control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
    ETag: etag,
    Vary: 'Accept-Encoding',
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const gzip = cached.gzipped && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  const body = gzip ? cached.gzipped! : cached.body;
  if (gzip) headers['Content-Encoding'] = 'gzip';
  headers['Content-Length'] = String(body.byteLength);
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}

function sendText(res: ServerResponse, req: IncomingMessage, status: number, text: string): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}

/** The daemon runs from a checkout whose UI was never built: say how to build it instead of a bare 404. */
function sendNotBuilt(res: ServerResponse, req: IncomingMessage, distDir: string): void {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Adagio: UI not built</title></head>
<body><h1>The Adagio web UI is not built</h1>
<p>No <code>index.html</code> in <code>${escapeHtml(distDir)}</code>. Build it with:</p>
<pre>npm run build:ui</pre>
<p>and reload this page. The API works without it.</p></body></html>
`;
  res.writeHead(503, {
    ...SECURITY_HEADERS,
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(html)),
    'Cache-Control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : html);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
