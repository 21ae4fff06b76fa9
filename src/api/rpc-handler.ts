import { fromBinary } from '@bufbuild/protobuf';
import { type ConnectRouter, type ConnectRouterOptions, createConnectRouter } from '@connectrpc/connect';
import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from '@connectrpc/connect/protocol';
import {
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from '@connectrpc/connect-node';
import type { Logger } from '../log.js';
import type { Req, Res } from './http.js';

/**
 * Dispatches RPC paths to the Connect router's handlers (gRPC, gRPC-Web and
 * Connect alike). It exists for one reason beyond connectNodeAdapter: a
 * Connect unary request whose protobuf body does not parse is the client's
 * fault, so it is answered INVALID_ARGUMENT (HTTP 400) where connect-es
 * would say INTERNAL (500).
 */
export function createRpcHandler(
  options: ConnectRouterOptions & { routes: (router: ConnectRouter) => void; logger: Logger },
): (req: Req, res: Res) => boolean {
  const router = createConnectRouter({
    acceptCompression: [compressionGzip],
    // Unknown JSON fields are refused, as the /v0 JSON routes refuse them (see request-check.ts for binary).
    jsonOptions: { ignoreUnknownFields: false },
    ...options,
  });
  options.routes(router);
  const byPath = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, h]));
  const maxBytes = options.readMaxBytes ?? DEFAULT_MAX_BYTES;

  return (req, res) => {
    const handler = byPath.get((req.url ?? '').split('?', 1)[0]!);
    if (!handler) return false;
    const uReq = universalRequestFromNodeRequest(req, res as never, undefined, undefined);
    const checked = isConnectUnaryProto(uReq, handler)
      ? checkUnaryProto(uReq, handler, maxBytes)
      : isGrpcSingleRequest(uReq, handler)
        ? checkGrpcRequest(uReq, handler, maxBytes)
        : handler(uReq);
    checked
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((e) =>
        options.logger.debug('rpc response not delivered', { method: handler.method.name, error: String(e) }),
      );
    return true;
  };
}

function isConnectUnaryProto(req: UniversalServerRequest, handler: UniversalHandler): boolean {
  return (
    handler.method.methodKind === 'unary' &&
    req.method === 'POST' &&
    (req.header.get('content-type') ?? '').split(';', 1)[0]!.trim() === 'application/proto' &&
    !req.header.get('content-encoding')
  );
}

async function checkUnaryProto(
  req: UniversalServerRequest,
  handler: UniversalHandler,
  maxBytes: number,
): Promise<UniversalServerResponse> {
  const body = await readBody(req, maxBytes);
  if (!body) return jsonAnswer(413, 'too_large', `request body exceeds ${maxBytes} bytes`);
  try {
    fromBinary(handler.method.input, body);
  } catch (e) {
    return jsonAnswer(400, 'invalid_argument', `malformed protobuf request: ${(e as Error).message}`);
  }
  return handler({
    ...req,
    body: (async function* () {
      yield body;
    })(),
  });
}

/** gRPC or gRPC-Web (binary) with one request message: unary and server-streaming methods. */
function isGrpcSingleRequest(req: UniversalServerRequest, handler: UniversalHandler): boolean {
  const type = (req.header.get('content-type') ?? '').split(';', 1)[0]!.trim();
  return (
    (handler.method.methodKind === 'unary' || handler.method.methodKind === 'server_streaming') &&
    req.method === 'POST' &&
    /^application\/grpc(-web)?(\+proto)?$/.test(type)
  );
}

/**
 * The gRPC counterpart of checkUnaryProto: a request envelope whose message
 * does not parse is answered INVALID_ARGUMENT (a trailers-only response)
 * where connect-es would say INTERNAL. Compressed envelopes are left to connect-es.
 */
async function checkGrpcRequest(
  req: UniversalServerRequest,
  handler: UniversalHandler,
  maxBytes: number,
): Promise<UniversalServerResponse> {
  const type = req.header.get('content-type') ?? 'application/grpc';
  const trailersOnly = (status: number, message: string): UniversalServerResponse => ({
    status: 200,
    header: new Headers({
      'Content-Type': type,
      'grpc-status': String(status),
      'grpc-message': encodeURIComponent(message),
    }),
  });
  const body = await readBody(req, maxBytes);
  if (!body) return trailersOnly(8, `request body exceeds ${maxBytes} bytes`); // RESOURCE_EXHAUSTED
  let problem: string | undefined;
  if (body.byteLength < 5) problem = 'request has no complete gRPC message envelope';
  else {
    const length = body.readUInt32BE(1);
    if (body.byteLength < 5 + length) problem = 'gRPC message is shorter than its envelope says';
    // One request message: connect-es would refuse more too, but only after splitting the whole body into
    // messages (an empty envelope is 5 bytes: a 16 MiB body made 3 million of them).
    else if (body.byteLength > 5 + length) problem = 'more than one request message';
    else if ((body[0]! & 1) === 0)
      try {
        fromBinary(handler.method.input, body.subarray(5, 5 + length));
      } catch (e) {
        problem = (e as Error).message;
      }
  }
  if (problem) return trailersOnly(3, `malformed protobuf request: ${problem}`); // INVALID_ARGUMENT
  return handler({
    ...req,
    body: (async function* () {
      yield body;
    })(),
  });
}

/**
 * The whole request body, for the checks that must parse it before connect-es
 * does; undefined past `maxBytes` (a chunked or HTTP/2 body states no length
 * up front: it is counted as it comes, not buffered whole first).
 */
async function readBody(req: UniversalServerRequest, maxBytes: number): Promise<Buffer | undefined> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const c of req.body as AsyncIterable<Uint8Array>) {
    size += c.byteLength;
    if (size > maxBytes) return undefined;
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

function jsonAnswer(status: number, code: string, message: string): UniversalServerResponse {
  const text = JSON.stringify({ code, message });
  return {
    status,
    header: new Headers({ 'Content-Type': 'application/json' }),
    body: (async function* () {
      yield new TextEncoder().encode(text);
    })(),
  };
}

/** connect-es's own default read limit, when none is given. */
const DEFAULT_MAX_BYTES = 0xffffffff;
