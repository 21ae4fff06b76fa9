import type { ServerResponse } from 'node:http';
import { create, type DescMessage, fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { ConnectError, type ServiceImpl } from '@connectrpc/connect';
import * as ag from '../gen/adagio/rpc/agent/agent_pb.js';
import type { Logger } from '../log.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { ERROR_TYPE_HEADER, signalContext } from './agent-service.js';
import { mapError } from './errors.js';
import { drained, type Req, type Res, readJson, sendJson } from './http.js';

/**
 * The agent API as plain JSON, for agents in any language with only an HTTP
 * client: `POST /v0/agent/<method>` with the method's request message as
 * canonical proto3 JSON (snake_case or camelCase; bytes in base64), answered
 * with its response message. `subscribe` streams NDJSON, one event per line.
 * Errors are `{code, message, reason?}` with the HTTP status of `code`;
 * `reason` is `lease_expired`, `claim_conflict` or `not_found.<kind>` when known.
 */
type Unary = { input: DescMessage; output: DescMessage; name: keyof ServiceImpl<typeof ag.AgentService> };

const UNARY: Record<string, Unary> = {
  register: { input: ag.RegisterRequestSchema, output: ag.RegisterResponseSchema, name: 'register' },
  deregister: { input: ag.DeregisterRequestSchema, output: ag.DeregisterResponseSchema, name: 'deregister' },
  heartbeat: { input: ag.HeartbeatRequestSchema, output: ag.HeartbeatResponseSchema, name: 'heartbeat' },
  'grant-lease': {
    input: ag.GrantLeaseRequestSchema,
    output: ag.GrantLeaseResponseSchema,
    name: 'grantLease',
  },
  'revoke-lease': {
    input: ag.RevokeLeaseRequestSchema,
    output: ag.RevokeLeaseResponseSchema,
    name: 'revokeLease',
  },
  'claim-next': { input: ag.ClaimNextRequestSchema, output: ag.ClaimNextResponseSchema, name: 'claimNext' },
  claim: { input: ag.ClaimRequestSchema, output: ag.ClaimResponseSchema, name: 'claim' },
  finish: { input: ag.FinishRequestSchema, output: ag.FinishResponseSchema, name: 'finish' },
  'append-output': {
    input: ag.AppendOutputRequestSchema,
    output: ag.AppendOutputResponseSchema,
    name: 'appendOutput',
  },
  'claims-held': {
    input: ag.ClaimsHeldRequestSchema,
    output: ag.ClaimsHeldResponseSchema,
    name: 'claimsHeld',
  },
  release: { input: ag.ReleaseRequestSchema, output: ag.ReleaseResponseSchema, name: 'release' },
};

export const AGENT_JSON_PREFIX = '/v0/agent/';

export function createAgentJsonRoutes(o: {
  service: ServiceImpl<typeof ag.AgentService>;
  logger: Logger;
  maxBodyBytes: number;
}): (req: Req, res: Res) => Promise<string> {
  const fail = (res: Res, e: unknown) => {
    const m = mapError(e, o.logger);
    const reason = e instanceof ConnectError ? e.metadata.get(ERROR_TYPE_HEADER) : null;
    if (!res.headersSent)
      sendJson(res, m.http, { code: m.code, message: m.message, ...(reason ? { reason } : {}) });
    else res.end();
  };

  async function body<D extends DescMessage>(req: Req, schema: D) {
    const json = await readJson(req, o.maxBodyBytes);
    if (json === null || typeof json !== 'object' || Array.isArray(json))
      throw new InvalidArgumentError('request body must be a JSON object');
    try {
      return fromJson(schema, json as JsonValue, { ignoreUnknownFields: true });
    } catch (e) {
      throw new InvalidArgumentError(`invalid request: ${(e as Error).message}`);
    }
  }

  /** Aborted when the client goes away before the answer: ClaimNext then stops waiting. */
  function clientSignal(res: Res): AbortSignal {
    const abort = new AbortController();
    (res as ServerResponse).on('close', () => abort.abort());
    return abort.signal;
  }

  async function subscribe(req: Req, res: Res): Promise<void> {
    const runtimes =
      req.method === 'GET'
        ? new URL(req.url ?? '/', 'http://localhost').searchParams.getAll('runtime')
        : (await body(req, ag.SubscribeRequestSchema)).runtimes;
    // Checked before the status line, so a bad request is a 400 rather than a 200 with an error line.
    if (!runtimes.some((r) => r !== ''))
      throw new InvalidArgumentError('runtimes must name at least one runtime');
    const out = res as ServerResponse;
    const signal = clientSignal(res);
    const events = o.service.subscribe!(
      create(ag.SubscribeRequestSchema, { runtimes }),
      signalContext(signal),
    ) as AsyncIterable<ag.SubscribeResponse>;
    // Headers now: the client sees the stream open even while nothing is READY.
    out.writeHead(200, {
      'Content-Type': 'application/x-ndjson; charset=utf-8',
      'Cache-Control': 'no-store',
    });
    out.flushHeaders();
    try {
      // Waiting for drain keeps the backlog in the store: a client that stops reading stops the subscription
      // taking (its queue then holds the store's paging back), rather than the response buffering every event.
      for await (const ev of events)
        if (!out.write(`${JSON.stringify(toJson(ag.SubscribeResponseSchema, ev))}\n`))
          await drained(out, signal);
    } catch (e) {
      if (!signal.aborted) out.write(`${JSON.stringify({ error: mapError(e, o.logger) })}\n`);
    } finally {
      out.end();
    }
  }

  return async (req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const method = path.slice(AGENT_JSON_PREFIX.length);
    try {
      if (method === 'subscribe') {
        if (req.method !== 'GET' && req.method !== 'POST') return notAllowed(res, path, 'GET, POST');
        await subscribe(req, res);
        return 'agent.subscribe';
      }
      const route = UNARY[method];
      if (!route) {
        sendJson(res, 404, { code: 'not_found', message: `no route ${path}` });
        return 'unknown';
      }
      if (req.method !== 'POST') return notAllowed(res, path, 'POST');
      const request = await body(req, route.input);
      const handler = o.service[route.name] as (r: unknown, c: unknown) => Promise<unknown>;
      const response = await handler(request, signalContext(clientSignal(res)));
      sendJson(res, 200, toJson(route.output, response as never));
      return `agent.${method}`;
    } catch (e) {
      fail(res, e);
      return `agent.${method}`;
    }
  };
}

function notAllowed(res: Res, path: string, allow: string): string {
  sendJson(res, 405, { code: 'invalid_argument', message: `use ${allow} on ${path}` }, { Allow: allow });
  return 'unknown';
}
