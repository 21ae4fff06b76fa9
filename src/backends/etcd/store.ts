import { readFileSync } from 'node:fs';
import { ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import {
  ClientClosedError,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCAbortedError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCGenericError,
  GRPCInternalError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
  GRPCUnavailableError,
  GRPCUnknownError,
  type ICompare,
  type IRangeRequest,
  type IRangeResponse,
  type IRequestOp,
  type IResponseOp,
  type ITxnRequest,
  type ITxnResponse,
  isRecoverableError,
} from 'etcd3';
import type { Logger } from '../../log.js';
import { TooLargeError, UnauthenticatedError, UnavailableError } from '../../protocol/errors.js';
import { prefixEnd } from './keys.js';
import { ETCD_MAX_ANSWER_BYTES, ETCD_MAX_TXN_OPS, MAX_ROUNDS, READS_PER_TXN } from './limits.js';

export interface EtcdConnectionOptions {
  /** host:port or URLs; http:// is assumed unless TLS options are given. */
  hosts: string[];
  username?: string;
  password?: string;
  /** Same as username/password. */
  auth?: { username: string; password: string };
  /**
   * PEM files (or their contents): the CA that signed etcd's certificate, and
   * a client certificate and key for mutual TLS.
   */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Per-call deadline. Default 10 s. */
  callTimeoutMs?: number;
  /** How long an operation retries through an unreachable cluster before UnavailableError. Default 15 s. */
  retryForMs?: number;
  /** Races an optimistic transaction may lose in a row before UnavailableError. Default MAX_ROUNDS (10,000). */
  maxRaceRounds?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The etcd client, reduced to what the backend needs: raw KV transactions and
 * ranges (so compares can name revisions and leases), with errors mapped to
 * the protocol's and transient failures retried within a bound.
 */
export class Store {
  readonly client: Etcd3;
  private readonly retryForMs: number;
  /** See EtcdConnectionOptions.maxRaceRounds. */
  readonly maxRaceRounds: number;
  closed = false;

  constructor(
    options: EtcdConnectionOptions,
    private readonly logger: Logger,
  ) {
    const tls = options.tls;
    const pem = (file?: string, data?: Buffer) => data ?? (file ? readFileSync(file) : undefined);
    const ca = pem(tls?.caFile, tls?.ca);
    const cert = pem(tls?.certFile, tls?.cert);
    const key = pem(tls?.keyFile, tls?.key);
    const secure = ca !== undefined || cert !== undefined;
    const username = options.username ?? options.auth?.username;
    const password = options.password ?? options.auth?.password;
    const hosts = options.hosts.map((h) =>
      /^https?:\/\//.test(h) ? h : `${secure ? 'https' : 'http'}://${h}`,
    );
    const timeout = options.callTimeoutMs ?? 10_000;
    this.retryForMs = options.retryForMs ?? 15_000;
    this.maxRaceRounds = options.maxRaceRounds ?? MAX_ROUNDS;
    this.client = new Etcd3({
      hosts,
      dialTimeout: 5_000,
      auth: username ? { username, password: password ?? '' } : undefined,
      credentials: secure
        ? { rootCertificate: ca ?? Buffer.alloc(0), certChain: cert, privateKey: key }
        : undefined,
      // Streams (watch, keepalive) live long; unary calls get a deadline so a dead member cannot hang them.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      grpcOptions: { 'grpc.max_receive_message_length': ETCD_MAX_ANSWER_BYTES },
      // etcd3's default breaker opens on 3 consecutive failures for 5 s: on a busy machine a burst of
      // deadline-exceeded calls then fails everything for seconds. retrying() already backs off, so
      // the breaker only needs to steer calls away from a member that keeps failing, briefly.
      faultHandling: {
        host: () =>
          circuitBreaker(handleWhen(isRecoverableError), {
            halfOpenAfter: 1_000,
            breaker: new ConsecutiveBreaker(20),
          }),
      },
    });
  }

  async txn(req: ITxnRequest): Promise<ITxnResponse> {
    try {
      return await this.client.kv.txn(req);
    } catch (e) {
      throw mapError(e);
    }
  }

  /**
   * Read-only ops in as many transactions as etcd's per-transaction op limit
   * needs, responses in order. Each op should name a revision when the reads
   * must agree with each other.
   */
  async readAll(ops: IRequestOp[]): Promise<IResponseOp[]> {
    if (ops.length <= READS_PER_TXN) return (await this.txn({ success: ops })).responses;
    const out: IResponseOp[] = [];
    for (let i = 0; i < ops.length; i += READS_PER_TXN)
      out.push(...(await this.txn({ success: ops.slice(i, i + READS_PER_TXN) })).responses);
    return out;
  }

  /**
   * Ops that need not be atomic together (idempotent puts and deletes), in
   * order, as many transactions as ETCD_MAX_TXN_OPS needs: an op that must come
   * last (a marker's delete) is last.
   */
  async writeAll(ops: IRequestOp[]): Promise<void> {
    for (let i = 0; i < ops.length; i += ETCD_MAX_TXN_OPS)
      await this.txn({ success: ops.slice(i, i + ETCD_MAX_TXN_OPS) });
  }

  async range(req: IRangeRequest): Promise<IRangeResponse> {
    try {
      return await this.client.kv.range(req);
    } catch (e) {
      throw mapError(e);
    }
  }

  /**
   * Runs `fn` again while the cluster is unreachable, with backoff, for up to
   * retryForMs; then UnavailableError. `attempt` tells a non-idempotent
   * operation that an earlier try may have committed without its reply.
   */
  async retrying<T>(what: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.retryForMs;
    let delay = 25;
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new UnavailableError('etcd repository is closed');
      try {
        return await fn(attempt);
      } catch (e) {
        if (!isTransient(e) || this.closed) throw e;
        if (Date.now() + delay > deadline)
          throw new UnavailableError(`etcd unavailable during ${what}: ${(e as Error).message}`, {
            cause: e,
          });
        this.logger.debug('etcd call failed; retrying', { what, attempt, error: (e as Error).message });
        await sleep(delay);
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  close(): void {
    this.closed = true;
    this.client.close();
  }
}

/** Transient: the cluster (or this member) is unreachable or between leaders; the call may succeed later. */
export function isTransient(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  // Refused for its size (gRPC RESOURCE_EXHAUSTED: "received message larger than max"): no retry will pass.
  if (/larger than max|request is too large|too many operations/i.test(e.message)) return false;
  if (e instanceof UnavailableError) return !/closed/.test(e.message);
  if (e instanceof ClientClosedError) return false;
  if (e instanceof GRPCInvalidArgumentError || e instanceof GRPCUnauthenticatedError) return false;
  // etcd3's per-host circuit breaker (cockatiel) opens after failures; its errors keep the
  // plain name 'Error' and say so by a flag, so a name check alone never matched them.
  const flagged = e as { isBrokenCircuitError?: boolean; isIsolatedCircuitError?: boolean };
  if (
    isRecoverableError(e) ||
    flagged.isBrokenCircuitError === true ||
    flagged.isIsolatedCircuitError === true ||
    /circuit breaker is open/i.test(e.message)
  )
    return true;
  // A member killed mid-call cancels or resets the calls in flight on its connection: the
  // cluster may still have committed them, and retrying() (with its in-doubt checks) must decide.
  if (
    e instanceof GRPCCancelledError ||
    e instanceof GRPCUnavailableError ||
    e instanceof GRPCDeadlineExceededError ||
    e instanceof GRPCInternalError ||
    e instanceof GRPCUnknownError ||
    e instanceof GRPCAbortedError
  )
    return true;
  if (e instanceof GRPCGenericError)
    return /leader|timed out|timeout|unavailable|connect|too many requests|stopped|unhealthy|deadline|No connection|RST_STREAM/i.test(
      e.message,
    );
  return /ECONNREFUSED|ECONNRESET|EPIPE|socket|No connection established|deadline/i.test(e.message);
}

function mapError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  if (/request is too large|too many operations|larger than max/i.test(e.message))
    return new TooLargeError(`etcd refused the request: ${e.message}`, { cause: e });
  if (/authentication failed|invalid auth token|user name not found|permission denied/i.test(e.message))
    return new UnauthenticatedError(`etcd refused the credentials: ${e.message}`, { cause: e });
  if (e instanceof ClientClosedError) return new UnavailableError('etcd repository is closed', { cause: e });
  return e;
}

export function isLeaseNotFound(e: unknown): boolean {
  return e instanceof EtcdLeaseInvalidError || (e instanceof Error && /lease not found/.test(e.message));
}

// ---- request builders

export const put = (key: Buffer, value: Buffer, lease?: string): IRequestOp => ({
  request_put: { key, value, lease: lease ?? 0 },
});
export const del = (key: Buffer): IRequestOp => ({ request_delete_range: { key } });
export const delPrefix = (prefix: Buffer): IRequestOp => ({
  request_delete_range: { key: prefix, range_end: prefixEnd(prefix) },
});
export const get = (key: Buffer): IRequestOp => ({ request_range: { key } });
export const getPrefix = (prefix: Buffer, extra: Partial<IRangeRequest> = {}): IRequestOp => ({
  request_range: { key: prefix, range_end: prefixEnd(prefix), ...extra },
});
/** A key range [key, range_end): reads with `extra` (limit, count_only), or deletes. */
export type KeyRange = { key: Buffer; range_end: Buffer };
export const getRange = (r: KeyRange, extra: Partial<IRangeRequest> = {}): IRequestOp => ({
  request_range: { ...r, ...extra },
});
export const delRange = (r: KeyRange): IRequestOp => ({ request_delete_range: { ...r } });
export const countPrefix = (prefix: Buffer): IRequestOp => getPrefix(prefix, { count_only: true });
/** The last key under a prefix (e.g. the latest attempt). */
export const lastUnder = (prefix: Buffer): IRequestOp =>
  getPrefix(prefix, { limit: 1, sort_order: 'Descend', sort_target: 'Key' });

export const modIs = (key: Buffer, rev: string | number): ICompare => ({
  key,
  target: 'Mod',
  result: 'Equal',
  mod_revision: rev,
});
export const createdAt = (key: Buffer, rev: string | number): ICompare => ({
  key,
  target: 'Create',
  result: 'Equal',
  create_revision: rev,
});
export const absent = (key: Buffer): ICompare => ({ key, target: 'Version', result: 'Equal', version: 0 });
export const leaseIs = (key: Buffer, lease: string): ICompare => ({
  key,
  target: 'Lease',
  result: 'Equal',
  lease,
});
export const valueIs = (key: Buffer, value: Buffer): ICompare => ({
  key,
  target: 'Value',
  result: 'Equal',
  value,
});
