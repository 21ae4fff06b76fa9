import type { Interceptor } from '@connectrpc/connect';
import { InvalidArgumentError } from '../protocol/errors.js';
import { toConnectError } from './errors.js';

/**
 * Unknown fields are refused on every protocol, as PUT /v0/runs refuses them
 * in JSON: a typo'd field ("retries") must not run silently without its
 * effect. Connect JSON refuses them at parse (jsonOptions); binary protobuf
 * (gRPC, gRPC-Web, Connect proto) keeps them in `$unknown`, checked here.
 */
export function unknownFieldsInterceptor(): Interceptor {
  return (next) => async (req) => {
    const message = req.stream ? undefined : (req as { message?: unknown }).message;
    const where = message === undefined ? undefined : unknownField(message, req.method.input.typeName);
    if (where) throw toConnectError(new InvalidArgumentError(`unknown field ${where}`));
    return next(req);
  };
}

/** Where the first unknown field is ("adagio.v1.NodeSpec field 9"), or undefined. */
function unknownField(value: unknown, path: string): string | undefined {
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return undefined;
  const unknown = (value as { $unknown?: { no: number }[] }).$unknown;
  if (unknown && unknown.length > 0) return `number ${unknown[0]!.no} in ${path}`;
  for (const [k, v] of Object.entries(value)) {
    if (k === '$unknown' || k === '$typeName') continue;
    const found = unknownField(v, `${path}.${k}`);
    if (found) return found;
  }
  return undefined;
}
