import type { ServerResponse } from 'node:http';
import {
  create,
  type DescMessage,
  fromJson,
  type JsonValue,
  type MessageInitShape,
  toJson,
} from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type { Logger } from '../log.js';
import { InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import type { Repository } from '../protocol/repository.js';
import { mapError } from './errors.js';
import { drained, type Req, type Res, readJson, readText, sendJson } from './http.js';
import { scheduleRoutes } from './schedule-routes.js';
import { requireId } from './service.js';
import { watchMessages } from './watch-stream.js';
import { runFilterParams, workflowRoutes } from './workflow-routes.js';

/**
 * The plain JSON routes under /v0 (docs/design.md §2), for curl and any language
 * without a Connect client. Bodies are the canonical proto3 JSON of the same
 * messages the RPCs use, so both parsers accept snake_case and camelCase.
 *
 *   GET  /v0/stats                   GET /v0/agents
 *   PUT  /v0/runs   {"spec": graph}  (POST accepted too)
 *   GET  /v0/runs?start_ns=&finish_ns=&limit=&cursor=  (filters: workflow-routes.ts)
 *   PUT  /v0/runs   {"workflow": name, "version": n, "params": {...}, "name": ..., "labels": {...}, "request_id": ...}
 *   /v0/workflows…                   workflow definitions (workflow-routes.ts)
 *   /v0/schedules…                   schedules (schedule-routes.ts)
 *   GET  /v0/runs/{id}               POST /v0/runs/{id}/cancel
 *   POST /v0/runs/{id}/retry  body optional {"nodes": [names]}     POST /v0/runs/{id}/rerun
 *   GET  /v0/runs/{id}/watch         NDJSON: the run, then one line per node transition
 *   GET  /v0/runs/{id}/nodes/{node}/attempts/{n}/output   one attempt's full output ({"output": base64})
 */
export interface JsonRoutesOptions {
  service: ServiceImpl<typeof cp.ControlPlane>;
  repository: Repository;
  logger: Logger;
  maxBodyBytes: number;
}

type Route = (req: Req, res: Res, url: URL, match: RegExpMatchArray) => Promise<void>;

export function createJsonRoutes(o: JsonRoutesOptions): (req: Req, res: Res) => Promise<string | undefined> {
  // The service methods here never read their context; watch is served from the repository directly.
  const ctx = {} as HandlerContext;
  const reply = <D extends DescMessage>(res: Res, schema: D, msg: MessageInitShape<D>) =>
    sendJson(res, 200, toJson(schema, create(schema, msg)));

  const routes: [string, RegExp, string, Route][] = [
    [
      'GET',
      /^\/v0\/stats$/,
      'stats',
      async (_q, res) =>
        reply(res, cp.StatsResponseSchema, await o.service.stats!(create(cp.StatsRequestSchema), ctx)),
    ],
    [
      'GET',
      /^\/v0\/agents$/,
      'agents',
      async (_q, res) =>
        reply(
          res,
          cp.ListAgentsResponseSchema,
          await o.service.listAgents!(create(cp.ListAgentsRequestSchema), ctx),
        ),
    ],
    ['PUT', /^\/v0\/runs$/, 'start', async (req, res) => start(req, res)],
    ['POST', /^\/v0\/runs$/, 'start', async (req, res) => start(req, res)],
    [
      'GET',
      /^\/v0\/runs$/,
      'list',
      async (_q, res, url) =>
        reply(res, cp.ListRunsResponseSchema, await o.service.listRuns!(listRequest(url), ctx)),
    ],
    [
      'GET',
      /^\/v0\/runs\/([^/]+)$/,
      'inspect',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.InspectResponseSchema,
          await o.service.inspect!(create(cp.InspectRequestSchema, { id: decode(m[1]!) }), ctx),
        ),
    ],
    [
      'POST',
      /^\/v0\/runs\/([^/]+)\/cancel$/,
      'cancel',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.CancelResponseSchema,
          await o.service.cancel!(create(cp.CancelRequestSchema, { id: decode(m[1]!) }), ctx),
        ),
    ],
    [
      'POST',
      /^\/v0\/runs\/([^/]+)\/retry$/,
      'retry',
      async (req, res, _u, m) => {
        const nodes = await retryNodes(req);
        reply(
          res,
          cp.RetryResponseSchema,
          await o.service.retry!(create(cp.RetryRequestSchema, { id: decode(m[1]!), nodes }), ctx),
        );
      },
    ],
    [
      'POST',
      /^\/v0\/runs\/([^/]+)\/rerun$/,
      'rerun',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.RerunResponseSchema,
          await o.service.rerun!(create(cp.RerunRequestSchema, { id: decode(m[1]!) }), ctx),
        ),
    ],
    [
      'GET',
      /^\/v0\/runs\/([^/]+)\/nodes\/([^/]+)\/attempts\/(\d{1,6})\/output$/,
      'attempt_output',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.GetAttemptOutputResponseSchema,
          await o.service.getAttemptOutput!(
            create(cp.GetAttemptOutputRequestSchema, {
              runId: decode(m[1]!),
              node: decode(m[2]!),
              attempt: Number(m[3]),
            }),
            ctx,
          ),
        ),
    ],
    ['GET', /^\/v0\/runs\/([^/]+)\/watch$/, 'watch', async (_q, res, _u, m) => watch(res, decode(m[1]!))],
    ...workflowRoutes(o.service, ctx, reply, o.maxBodyBytes),
    ...scheduleRoutes(o.service, ctx, reply, o.maxBodyBytes),
  ];

  /** A retry's body is optional: empty, or {"nodes": [names]}. */
  async function retryNodes(req: Req): Promise<string[]> {
    const text = await readText(req, o.maxBodyBytes);
    if (text.trim() === '') return [];
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new InvalidArgumentError(`request body is not valid JSON: ${(e as Error).message}`);
    }
    // Only an object: a bare list (or anything else) must not be read as "no nodes named", which retries them all.
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new InvalidArgumentError('retry body must be {"nodes": ["name", ...]} (or empty)');
    // Unknown fields are refused as on every route: a misspelt "nodes" must not retry the whole run.
    const unknown = Object.keys(json).filter((k) => k !== 'nodes');
    if (unknown.length > 0)
      throw new InvalidArgumentError(
        `retry body has unknown field ${JSON.stringify(unknown[0])}: it takes {"nodes": ["name", ...]} (or nothing)`,
      );
    const nodes = (json as { nodes?: unknown }).nodes;
    if (nodes === undefined) return [];
    if (!Array.isArray(nodes) || nodes.some((n) => typeof n !== 'string'))
      throw new InvalidArgumentError('retry body must be {"nodes": ["name", ...]} (or empty)');
    return nodes as string[];
  }

  async function start(req: Req, res: Res): Promise<void> {
    const json = await readJson(req, o.maxBodyBytes);
    if (
      json === null ||
      typeof json !== 'object' ||
      Array.isArray(json) ||
      !('spec' in json || 'workflow' in json)
    )
      throw new InvalidArgumentError(
        'request body must be a JSON object {"spec": <graph>} or {"workflow": "<name>", "params": {...}}',
      );
    let msg: cp.StartRequest;
    try {
      msg = fromJson(cp.StartRequestSchema, json as JsonValue);
    } catch (e) {
      throw new InvalidArgumentError(`invalid start request: ${(e as Error).message}`);
    }
    reply(res, cp.StartResponseSchema, await o.service.start!(msg, ctx));
  }

  async function watch(res: Res, id: string): Promise<void> {
    // Both response kinds share this subset; their write() overloads just differ in typing.
    const out = res as ServerResponse;
    const abort = new AbortController();
    out.on('close', () => abort.abort());
    const events = watchMessages(o.repository, requireId(id), { signal: abort.signal })[
      Symbol.asyncIterator
    ]();
    // The first event decides the status line: an unknown run is a 404, not a 200 with an error line.
    const first = await events.next();
    out.writeHead(200, {
      'Content-Type': 'application/x-ndjson; charset=utf-8',
      'Cache-Control': 'no-store',
    });
    try {
      // Waiting for drain moves backpressure to watchMessages' bounded queue, which cuts a stalled reader off.
      for (let r = first; !r.done; r = await events.next())
        if (!out.write(`${JSON.stringify(toJson(cp.WatchResponseSchema, r.value))}\n`))
          await drained(out, abort.signal);
    } catch (e) {
      if (!abort.signal.aborted) out.write(`${JSON.stringify({ error: mapError(e, o.logger) })}\n`);
    } finally {
      abort.abort();
      out.end();
    }
  }

  /** Serves a /v0 request; returns the route name (for metrics), or undefined when no route matched. */
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const candidates = routes.filter(([, re]) => re.test(url.pathname));
    if (candidates.length === 0) {
      sendJson(res, 404, { code: 'not_found', message: `no route ${url.pathname}` });
      return 'unknown';
    }
    const route = candidates.find(([method]) => method === req.method);
    if (!route) {
      const allow = candidates.map(([m]) => m).join(', ');
      sendJson(
        res,
        405,
        { code: 'invalid_argument', message: `use ${allow} on ${url.pathname}` },
        { Allow: allow },
      );
      return 'unknown';
    }
    const [, re, name, handle] = route;
    try {
      await handle(req, res, url, url.pathname.match(re)!);
    } catch (e) {
      const m = mapError(e, o.logger);
      if (!res.headersSent) sendJson(res, m.http, { code: m.code, message: m.message });
      else res.end();
    }
    return name;
  };
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new NotFoundError('run', segment);
  }
}

function listRequest(url: URL): cp.ListRunsRequest {
  const p = url.searchParams;
  return create(cp.ListRunsRequestSchema, {
    startNs: bigintParam(p, 'start_ns'),
    finishNs: bigintParam(p, 'finish_ns'),
    limit: intParam(p, 'limit'),
    cursor: p.get('cursor') ?? '',
    ...runFilterParams(p),
  });
}

function bigintParam(p: URLSearchParams, name: string): bigint {
  const v = p.get(name) ?? p.get(name.replace(/_(.)/g, (_, c: string) => c.toUpperCase()));
  if (v === null || v === '') return 0n;
  if (!/^\d{1,19}$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number of nanoseconds`);
  return BigInt(v);
}

function intParam(p: URLSearchParams, name: string): number {
  const v = p.get(name);
  if (v === null || v === '') return 0;
  if (!/^\d{1,9}$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number`);
  return Number(v);
}
