import { Code, ConnectError } from '@connectrpc/connect';
import type { Logger } from '../log.js';
import { type ErrorCode, isAdagioError } from '../protocol/errors.js';

/**
 * One table from the protocol's typed errors to gRPC/Connect codes and HTTP
 * statuses, so every transport answers the same failure the same way.
 */
const CODES: Record<ErrorCode, { connect: Code; http: number }> = {
  invalid_argument: { connect: Code.InvalidArgument, http: 400 },
  not_found: { connect: Code.NotFound, http: 404 },
  conflict: { connect: Code.FailedPrecondition, http: 409 },
  unavailable: { connect: Code.Unavailable, http: 503 },
  unauthenticated: { connect: Code.Unauthenticated, http: 401 },
  permission_denied: { connect: Code.PermissionDenied, http: 403 },
  too_large: { connect: Code.ResourceExhausted, http: 413 },
  overloaded: { connect: Code.ResourceExhausted, http: 429 },
  internal: { connect: Code.Internal, http: 500 },
};

export interface MappedError {
  code: ErrorCode;
  connect: Code;
  http: number;
  message: string;
}

/** Unknown errors become `internal` with a generic message: internals are logged, never sent. */
export function mapError(e: unknown, logger?: Logger): MappedError {
  if (isAdagioError(e)) return { code: e.code, ...CODES[e.code], message: e.message };
  // A typed error wrapped for Connect keeps its own code (overloaded and too_large share RESOURCE_EXHAUSTED).
  if (e instanceof ConnectError && isAdagioError(e.cause)) return mapError(e.cause, logger);
  if (e instanceof ConnectError) {
    const entry = Object.entries(CODES).find(([, v]) => v.connect === e.code);
    const code = (entry?.[0] as ErrorCode | undefined) ?? 'internal';
    return { code, ...CODES[code], message: e.rawMessage };
  }
  logger?.error('internal error', { error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  return { code: 'internal', ...CODES.internal, message: 'internal error (see the daemon log)' };
}

/**
 * The error's own code, sent beside the gRPC/Connect code: two codes share
 * RESOURCE_EXHAUSTED (too_large, overloaded), and a client must tell a
 * request to shrink from a server to retry later.
 */
export const ERROR_CODE_HEADER = 'adagio-error-code';

export function toConnectError(e: unknown, logger?: Logger): ConnectError {
  if (e instanceof ConnectError) return e;
  const m = mapError(e, logger);
  return new ConnectError(
    m.message,
    m.connect,
    { [ERROR_CODE_HEADER]: m.code },
    undefined,
    isAdagioError(e) ? e : undefined,
  );
}

export function connectCodeToErrorCode(code: Code): ErrorCode {
  const entry = Object.entries(CODES).find(([, v]) => v.connect === code);
  return (entry?.[0] as ErrorCode | undefined) ?? 'internal';
}

/** A received error's code: the one the server named (ERROR_CODE_HEADER), else the one its Connect code maps to. */
export function errorCodeOf(e: ConnectError): ErrorCode {
  const named = e.metadata.get(ERROR_CODE_HEADER);
  if (named !== null && Object.hasOwn(CODES, named) && CODES[named as ErrorCode].connect === e.code)
    return named as ErrorCode;
  return connectCodeToErrorCode(e.code);
}

export function httpStatusToErrorCode(status: number): ErrorCode {
  const entry = Object.entries(CODES).find(([, v]) => v.http === status);
  return (entry?.[0] as ErrorCode | undefined) ?? (status >= 500 ? 'unavailable' : 'invalid_argument');
}
