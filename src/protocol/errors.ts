/**
 * Typed errors of the protocol. Each carries the context a user needs; the API
 * maps `code` to gRPC and HTTP status codes, the CLI prints `message`.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'conflict'
  | 'unavailable'
  | 'unauthenticated'
  | 'permission_denied'
  | 'too_large'
  | 'overloaded'
  | 'internal';

export abstract class AdagioError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The graph breaks rule 1; `problems` lists every problem found. */
export class InvalidGraphError extends AdagioError {
  readonly code = 'invalid_argument';
  constructor(readonly problems: string[]) {
    super(
      `invalid graph: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? `; and ${problems.length - 10} more` : ''}`,
    );
  }
}

/** Any other malformed request: bad JSON, bad arguments, wrong types. */
export class InvalidArgumentError extends AdagioError {
  readonly code = 'invalid_argument';
}

export class NotFoundError extends AdagioError {
  readonly code = 'not_found';
  constructor(
    readonly kind: 'run' | 'node' | 'agent' | 'lease' | 'attempt' | 'workflow' | 'schedule',
    readonly id: string,
  ) {
    super(`${kind} ${JSON.stringify(id)} not found`);
  }
}

/**
 * A claim or finish lost a race: the node is not in the state the caller
 * expected (already claimed, not READY, or the claim is stale/foreign).
 */
export class ClaimConflictError extends AdagioError {
  readonly code = 'conflict';
  constructor(
    message: string,
    readonly runId: string,
    readonly node: string,
  ) {
    super(message);
  }
}

/**
 * The request conflicts with stored state other than a claim: e.g. deleting a
 * workflow a schedule still uses. The message says what is in the way.
 */
export class ConflictError extends AdagioError {
  readonly code = 'conflict';
}

/** The lease is gone: expired or revoked. Its claims are orphaned. */
export class LeaseExpiredError extends AdagioError {
  readonly code = 'conflict';
  constructor(readonly leaseId: string) {
    super(`lease ${leaseId} has expired or was revoked`);
  }
}

/** The backend cannot be reached or refused service; the call may succeed later. */
export class UnavailableError extends AdagioError {
  readonly code = 'unavailable';
}

export class UnauthenticatedError extends AdagioError {
  readonly code = 'unauthenticated';
}

/** A valid token that does not grant this call (the agent token on the control plane). */
export class PermissionDeniedError extends AdagioError {
  readonly code = 'permission_denied';
}

export class TooLargeError extends AdagioError {
  readonly code = 'too_large';
}

/**
 * Rule 15: a retry of a run that is not completed, or that succeeded. The
 * message names the run and what it is now.
 */
export class RunNotRetryableError extends AdagioError {
  readonly code = 'conflict';
  constructor(
    readonly runId: string,
    message: string,
  ) {
    super(message);
  }
}

/** A node the request names does not exist. */
export function nodeNotFound(runId: string, node: string): NotFoundError {
  return new NotFoundError('node', `${runId}/${node}`);
}

/**
 * Rule 4's refusal: a finish whose claim is not the node's live claim, with
 * what the node is now (its status, an orphaned claim, a cancelled run).
 */
export function claimNotLive(
  req: { runId: string; node: string; claimId: string },
  now: { status: string; orphaned?: boolean; cancelled?: boolean },
): ClaimConflictError {
  return new ClaimConflictError(
    `claim ${req.claimId} on ${req.runId}/${req.node} is not the node's live claim (node ${now.status}${now.orphaned ? ', orphaned' : ''}${now.cancelled ? ', run cancelled' : ''})`,
    req.runId,
    req.node,
  );
}

/** A workflow (or one version of it) that does not exist. */
export function workflowNotFound(name: string, version?: number): NotFoundError {
  return new NotFoundError('workflow', version === undefined ? name : `${name}@${version}`);
}

/** The refusal of deleting a workflow something (`user`, e.g. `schedule "nightly"`) still uses. */
export function workflowInUse(name: string, user: string): ConflictError {
  return new ConflictError(`workflow ${JSON.stringify(name)} is used by ${user}: remove that first`);
}

/** A schedule that does not exist. */
export function scheduleNotFound(name: string): NotFoundError {
  return new NotFoundError('schedule', name);
}

/**
 * An optimistic transaction that lost `rounds` races in a row (`what` names the
 * transition and what it fought over): others kept changing it; the call may
 * succeed later.
 */
export function keptLosingRaces(what: string, rounds: number): UnavailableError {
  return new UnavailableError(`${what} lost ${rounds} races in a row to concurrent writers; try again`);
}

/** The backend has too much queued work to take more now (admission control); retry later. */
export class OverloadedError extends AdagioError {
  readonly code = 'overloaded';
}

export function isAdagioError(e: unknown): e is AdagioError {
  return e instanceof AdagioError;
}
