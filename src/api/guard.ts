import { isIP } from 'node:net';
import type { Req } from './http.js';

/**
 * What keeps a web page from driving the API through the user's browser
 * (docs/security.md). Browsers send some cross-origin requests without asking
 * the server first ("simple" requests: a form post, `fetch` with `no-cors` and
 * a `text/plain` body), and DNS rebinding makes a hostile name resolve to the
 * daemon's address. So every request is checked before any route runs:
 *
 * - its `Host` must name this daemon: the listen address, a configured name
 *   (`-allowed-hosts`), the loopback names when listening on loopback, or an IP
 *   literal when listening on every interface (rebinding needs a DNS name);
 * - a state-changing request (any method but GET, HEAD, OPTIONS) must carry a
 *   content type a browser cannot send without a CORS preflight (JSON, protobuf,
 *   Connect, gRPC, gRPC-Web), and if it carries an `Origin` that origin must be
 *   the daemon's own or one allowed by `-cors-origins`.
 */
export interface GuardOptions {
  /** The host the server listens on (`127.0.0.1`, `::`, `0.0.0.0`, a name). */
  listenHost: string;
  /** More accepted `Host` names (no port); `*` accepts any. */
  allowedHosts?: readonly string[];
  /** Origins allowed by CORS; `*` allows any. */
  corsOrigins?: readonly string[];
}

export interface Refusal {
  http: number;
  code: string;
  message: string;
}

/** Content types no browser sends cross-origin without a preflight; lowercase, parameters dropped. */
export const STATE_CHANGING_CONTENT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/proto',
  'application/connect+json',
  'application/connect+proto',
  'application/grpc',
  'application/grpc+proto',
  'application/grpc+json',
  'application/grpc-web',
  'application/grpc-web+proto',
  'application/grpc-web+json',
  'application/grpc-web-text',
  'application/grpc-web-text+proto',
]);

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

export function isLoopbackHost(host: string): boolean {
  const h = bareHost(host);
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

export function isWildcardHost(host: string): boolean {
  const h = bareHost(host);
  return h === '' || h === '0.0.0.0' || h === '::';
}

export class RequestGuard {
  private readonly anyHost: boolean;
  private readonly hosts: Set<string>;
  private readonly ipLiterals: boolean;
  private readonly origins: readonly string[];

  constructor(options: GuardOptions) {
    const allowed = (options.allowedHosts ?? []).map(bareHost);
    this.anyHost = allowed.includes('*');
    this.hosts = new Set(allowed);
    const listen = bareHost(options.listenHost);
    const wildcard = isWildcardHost(listen);
    if (!wildcard) this.hosts.add(listen);
    if (wildcard || isLoopbackHost(listen)) for (const n of LOOPBACK_NAMES) this.hosts.add(n);
    this.ipLiterals = wildcard;
    this.origins = options.corsOrigins ?? [];
  }

  /** Undefined when the request may go on; else the answer to send. */
  check(req: Req): Refusal | undefined {
    const host = hostOf(req);
    if (host !== undefined && !this.hostAllowed(host))
      return {
        http: 421,
        code: 'misdirected_request',
        message: `Host "${host}" does not name this server; add it to -allowed-hosts if it should`,
      };
    if (SAFE_METHODS.has(req.method ?? 'GET')) return undefined;
    const type = (headerOf(req, 'content-type') ?? '').split(';', 1)[0]!.trim().toLowerCase();
    if (!STATE_CHANGING_CONTENT_TYPES.has(type))
      return {
        http: 415,
        code: 'unsupported_media_type',
        message: `${req.method} needs Content-Type: application/json (or a gRPC/Connect type), got ${type === '' ? 'none' : `"${type}"`}`,
      };
    const origin = headerOf(req, 'origin');
    if (origin !== undefined && !this.originAllowed(origin, host))
      return {
        http: 403,
        code: 'permission_denied',
        message: `cross-origin request from ${origin} refused; allow it with -cors-origins`,
      };
    return undefined;
  }

  private hostAllowed(hostHeader: string): boolean {
    if (this.anyHost) return true;
    const h = bareHost(stripPort(hostHeader));
    return this.hosts.has(h) || (this.ipLiterals && isIP(h) !== 0);
  }

  private originAllowed(origin: string, host: string | undefined): boolean {
    if (this.origins.includes('*') || this.origins.includes(origin)) return true;
    // Same origin: the page was served by this daemon under the Host it asked for.
    try {
      return host !== undefined && new URL(origin).host === host.toLowerCase();
    } catch {
      return false;
    }
  }
}

function headerOf(req: Req, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** HTTP/1 `Host`, or HTTP/2 `:authority`. */
function hostOf(req: Req): string | undefined {
  return headerOf(req, 'host') ?? headerOf(req, ':authority');
}

function stripPort(hostport: string): string {
  const h = hostport.trim();
  if (h.startsWith('[')) return h.slice(0, h.indexOf(']') + 1);
  const colon = h.indexOf(':');
  return colon >= 0 && h.indexOf(':', colon + 1) < 0 ? h.slice(0, colon) : h;
}

/** Lowercase, no brackets around an IPv6 literal, no trailing dot. */
function bareHost(host: string): string {
  return host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
}
