import { Code, ConnectError } from '@connectrpc/connect';
import { ERROR_TYPE_HEADER, type RemoteErrorType } from '../../api/agent-service.js';
import { errorCodeOf } from '../../api/errors.js';
import { ApiError } from '../../client/index.js';
import {
  AdagioError,
  ClaimConflictError,
  type ErrorCode,
  InvalidArgumentError,
  InvalidGraphError,
  LeaseExpiredError,
  NotFoundError,
  nodeNotFound,
  OverloadedError,
  RunNotRetryableError,
  TooLargeError,
  UnauthenticatedError,
  UnavailableError,
} from '../../protocol/errors.js';

/** A Repository method a remote agent has no use for and the agent API does not offer. */
export class NotSupportedError extends AdagioError {
  readonly code = 'invalid_argument';
  constructor(readonly method: string) {
    super(`${method} is not available through the agent API (the remote backend serves agents only)`);
  }
}

/** Any other failure the API reported, with the API's code. */
export class RemoteApiError extends AdagioError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What the call was about, so a typed error can be rebuilt with its context. */
export interface CallContext {
  address: string;
  leaseId?: string;
  runId?: string;
  node?: string;
  id?: string;
}

/**
 * Rebuilds the protocol's typed errors from the API's answer, so the agent
 * pool reacts exactly as it does against a local backend: a lapsed lease
 * re-registers, a refused finish is dropped, an unreachable API is retried.
 */
export function fromConnectError(e: unknown, ctx: CallContext): AdagioError {
  if (e instanceof AdagioError) return e;
  if (!(e instanceof ConnectError))
    return new UnavailableError(`agent API at ${ctx.address}: ${(e as Error)?.message ?? String(e)}`, {
      cause: e,
    });
  const type = e.metadata.get(ERROR_TYPE_HEADER) as RemoteErrorType | null;
  const message = e.rawMessage || Code[e.code];
  if (type === 'lease_expired') return new LeaseExpiredError(ctx.leaseId ?? '');
  if (type === 'claim_conflict') return new ClaimConflictError(message, ctx.runId ?? '', ctx.node ?? '');
  if (type?.startsWith('not_found.')) {
    const kind = type.slice('not_found.'.length) as NotFoundError['kind'];
    if (kind === 'node' && ctx.runId !== undefined && ctx.node !== undefined)
      return nodeNotFound(ctx.runId, ctx.node);
    const id =
      kind === 'lease' ? ctx.leaseId : kind === 'run' ? ctx.runId : kind === 'node' ? ctx.node : ctx.id;
    return new NotFoundError(kind, id ?? '');
  }
  switch (e.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.Unknown:
    case Code.Aborted:
    case Code.Canceled:
      // Transport failures (refused, reset, proxy errors) land here: the pool retries these.
      return new UnavailableError(`agent API at ${ctx.address}: ${message}`, { cause: e });
    case Code.Unauthenticated:
      return new UnauthenticatedError(`agent API at ${ctx.address}: ${message}`);
    case Code.InvalidArgument:
      return new InvalidArgumentError(message);
    case Code.ResourceExhausted:
      return errorCodeOf(e) === 'overloaded' ? new OverloadedError(message) : new TooLargeError(message);
    default:
      return new RemoteApiError(errorCodeOf(e), message, { cause: e });
  }
}

const GRAPH_PREFIX = 'invalid graph: ';

/**
 * Rebuilds the protocol's typed errors from a control-plane answer (start,
 * inspect, cancel, watch go through the typed client, whose errors carry only
 * a code): a not-found names the run asked about, and a refused graph gets its
 * problems back from InvalidGraphError's message ("invalid graph: p1; p2").
 */
export function fromControlError(e: unknown, ctx: { runId?: string }): unknown {
  if (!(e instanceof ApiError)) return e;
  if (e.code === 'not_found' && ctx.runId !== undefined) return new NotFoundError('run', ctx.runId);
  if (e.code === 'invalid_argument' && e.message.startsWith(GRAPH_PREFIX))
    return new InvalidGraphError(e.message.slice(GRAPH_PREFIX.length).split('; '));
  if (e.code === 'invalid_argument') return new InvalidArgumentError(e.message);
  if (e.code === 'overloaded') return new OverloadedError(e.message);
  if (e.code === 'too_large') return new TooLargeError(e.message);
  // The control plane's only conflict on a run is a refused retry (rule 15).
  if (e.code === 'conflict' && ctx.runId !== undefined) return new RunNotRetryableError(ctx.runId, e.message);
  return e;
}
