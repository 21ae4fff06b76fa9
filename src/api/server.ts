import { createServer as createHttp1Server } from 'node:http';
import { createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo, Server, Socket } from 'node:net';
import type { ConnectRouter, Interceptor } from '@connectrpc/connect';
import { AgentService } from '../gen/adagio/rpc/agent/agent_pb.js';
import { ControlPlane } from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import { type Logger, silentLogger } from '../log.js';
import type { Repository } from '../protocol/repository.js';
import { Admission, DEFAULT_MAX_QUEUED_NODES } from './admission.js';
import { AGENT_JSON_PREFIX, createAgentJsonRoutes } from './agent-json-routes.js';
import { agentService } from './agent-service.js';
import { AGENT_ONLY_MESSAGE, TokenCheck, UNAUTHENTICATED_MESSAGE } from './auth.js';
import { mapError } from './errors.js';
import { RequestGuard } from './guard.js';
import { type Req, type Res, sendJson, sendText } from './http.js';
import { createJsonRoutes } from './json-routes.js';
import { dualProtocolListener } from './listener.js';
import { ApiMetrics } from './metrics.js';
import { ReadyFeeds } from './ready-feeds.js';
import { unknownFieldsInterceptor } from './request-check.js';
import { createRpcHandler } from './rpc-handler.js';
import { controlPlaneService } from './service.js';
import { createUiHandler } from './ui.js';

export const DEFAULT_API_PORT = 7890;
/** Largest request body accepted (a 20,000-node graph with modest metadata fits). */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface ApiServerOptions {
  repository: Repository;
  logger?: Logger;
  /** Accepted people tokens (every call); none of these nor agentTokens means no auth. Health endpoints and the UI's static files never need one. */
  tokens?: string[];
  /** Accepted agent tokens: the agent API only (AgentService, /v0/agent/*). */
  agentTokens?: string[];
  /** More accepted `Host` names; `*` accepts any. */
  allowedHosts?: string[];
  maxBodyBytes?: number;
  /** Serve the web UI at `/` (default true); `distDir` overrides where its build is. */
  ui?: boolean | { distDir?: string };
  /** Origins allowed to call the API from a browser; none by default. `*` allows any. */
  corsOrigins?: string[];
  metrics?: ApiMetrics;
  /** Cap on queued (WAITING + READY) nodes past which Start answers 429; 0 disables. Default DEFAULT_MAX_QUEUED_NODES. */
  maxQueuedNodes?: number;
  /** More RPC services on the same server (the agent API). */
  routes?: (router: ConnectRouter, interceptors: Interceptor[]) => void;
}

/**
 * One port for everything: gRPC (HTTP/2 cleartext), gRPC-Web and Connect
 * (HTTP/1.1 or 2) from one handler set, the plain JSON routes under /v0,
 * health, metrics and the web UI.
 */
export class ApiServer {
  readonly metrics: ApiMetrics;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly logger: Logger;
  private readonly feeds: ReadyFeeds;
  private boundAddress: string | undefined;
  /** Set by listen(): the Host check depends on the address listened on. */
  private guard = new RequestGuard({ listenHost: '127.0.0.1' });

  constructor(private readonly options: ApiServerOptions) {
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? new ApiMetrics();
    const repo = options.repository;
    const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    const auth = new TokenCheck(options.tokens ?? [], options.agentTokens ?? []);

    const timing: Interceptor = (next) => async (req) => {
      const done = this.metrics.time(req.method.name);
      try {
        const res = await next(req);
        done('ok');
        return res;
      } catch (e) {
        done(mapError(e).code);
        throw e;
      }
    };
    const interceptors = [timing, auth.interceptor(), unknownFieldsInterceptor()];
    const service = controlPlaneService(
      repo,
      this.logger,
      this.metrics,
      new Admission(repo, options.maxQueuedNodes ?? DEFAULT_MAX_QUEUED_NODES),
    );
    const agentLogger = this.logger.child({ api: 'agent' });
    this.feeds = new ReadyFeeds(repo, agentLogger);
    const agents = agentService(repo, agentLogger, this.feeds);
    const ui =
      options.ui === false ? undefined : createUiHandler(typeof options.ui === 'object' ? options.ui : {});
    const rpc = createRpcHandler({
      routes: (router) => {
        router.service(ControlPlane, service);
        router.service(AgentService, agents);
        options.routes?.(router, interceptors);
      },
      interceptors,
      readMaxBytes: maxBodyBytes,
      logger: this.logger,
    });
    const json = createJsonRoutes({ service, repository: repo, logger: this.logger, maxBodyBytes });
    const agentJson = createAgentJsonRoutes({ service: agents, logger: this.logger, maxBodyBytes });

    const handle = async (req: Req, res: Res): Promise<void> => {
      const path = (req.url ?? '/').split('?', 1)[0]!;
      if (this.cors(req, res)) return;
      const refusal = this.guard.check(req);
      if (refusal) return sendJson(res, refusal.http, { code: refusal.code, message: refusal.message });
      if (path === '/healthz') return sendText(res, 200, 'ok\n');
      if (path === '/readyz') return this.ready(res);
      const isApi = path.startsWith('/v0/') || path === '/metrics';
      const role = isApi ? auth.role(req.headers.authorization) : undefined;
      if (isApi && role === undefined)
        return sendJson(res, 401, { code: 'unauthenticated', message: UNAUTHENTICATED_MESSAGE });
      if (role === 'agent' && !path.startsWith(AGENT_JSON_PREFIX))
        return sendJson(res, 403, { code: 'permission_denied', message: AGENT_ONLY_MESSAGE });
      if (path === '/metrics') {
        return sendText(res, 200, await this.metrics.registry.metrics(), this.metrics.registry.contentType);
      }
      if (path.startsWith('/v0/')) {
        const started = performance.now();
        // Labelled by route name, never by path: ids in paths would grow the series without bound.
        const route = path.startsWith(AGENT_JSON_PREFIX) ? await agentJson(req, res) : await json(req, res);
        this.metrics.requestDuration.observe(
          { route: `json.${route}`, code: String(res.statusCode) },
          (performance.now() - started) / 1000,
        );
        return;
      }
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBodyBytes) {
        return sendJson(res, 413, {
          code: 'too_large',
          message: `request body exceeds ${maxBodyBytes} bytes`,
        });
      }
      if (rpc(req, res)) return;
      if (ui?.(req as never, res as never)) return;
      sendJson(res, 404, { code: 'not_found', message: `no route ${path}` });
    };

    const onRequest = (req: Req, res: Res) => {
      handle(req, res).catch((e) => {
        const m = mapError(e, this.logger);
        if (!res.headersSent) sendJson(res, m.http, { code: m.code, message: m.message });
        else res.end();
      });
    };
    const h2 = createHttp2Server(onRequest);
    // A peer speaking garbage must not take the process down.
    h2.on('sessionError', (e) => this.logger.debug('http2 session error', { error: String(e) }));
    const h1 = createHttp1Server(onRequest);
    h1.on('clientError', (_e, socket) => socket.destroy());
    this.server = dualProtocolListener(h1, h2);
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  get address(): string {
    if (!this.boundAddress) throw new Error('the API server is not listening');
    return this.boundAddress;
  }

  /** Listens and resolves with the base URL (`http://host:port`); port 0 picks a free one. */
  listen(host = '127.0.0.1', port = DEFAULT_API_PORT): Promise<string> {
    this.guard = new RequestGuard({
      listenHost: host,
      allowedHosts: this.options.allowedHosts,
      corsOrigins: this.options.corsOrigins,
    });
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        const a = this.server.address() as AddressInfo;
        const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        this.boundAddress = `http://${h}:${a.port}`;
        resolve(this.boundAddress);
      });
    });
  }

  /** Stops accepting, gives in-flight requests `graceMs`, then cuts what remains (watch streams). */
  async close(graceMs = 1000): Promise<void> {
    this.feeds.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const timer = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, graceMs);
    timer.unref();
    // Idle keep-alive connections would hold close() open for the whole grace period.
    for (const s of this.sockets) if (!s.writableLength) s.end();
    await closed;
    clearTimeout(timer);
  }

  private async ready(res: Res): Promise<void> {
    try {
      await withTimeout(this.options.repository.ping(), 3000);
      sendText(res, 200, 'ok\n');
    } catch (e) {
      sendText(res, 503, `backend unreachable: ${mapError(e).message}\n`);
    }
  }

  /** Answers CORS preflights; returns true when the request was fully handled. */
  private cors(req: Req, res: Res): boolean {
    const allowed = this.options.corsOrigins ?? [];
    const origin = req.headers.origin;
    if (allowed.length === 0 || !origin) return false;
    if (!allowed.includes('*') && !allowed.includes(origin)) return false;
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
    res.setHeader(
      'Access-Control-Expose-Headers',
      'Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Connect-Protocol-Version',
    );
    if (req.method !== 'OPTIONS') return false;
    res.setHeader('Access-Control-Allow-Methods', 'GET, POST, PUT, OPTIONS');
    res.setHeader(
      'Access-Control-Allow-Headers',
      'Authorization, Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Grpc-Timeout, X-Grpc-Web, X-User-Agent',
    );
    res.setHeader('Access-Control-Max-Age', '600');
    res.writeHead(204);
    res.end();
    return true;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
