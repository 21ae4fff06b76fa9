import pg from 'pg';
import type { Logger } from '../../log.js';
import { UnavailableError } from '../../protocol/index.js';

/**
 * The connection pool and the two ways to use it: single statements and
 * transactions. Connection failures become UnavailableError with context;
 * operations that are safe to repeat are retried until a deadline, so a
 * PostgreSQL restart is invisible to callers beyond a pause.
 */
export interface DbOptions {
  connectionString: string;
  schema: string;
  poolSize: number;
  /** How long an operation keeps retrying through connection failures. */
  retryForMs: number;
  logger: Logger;
}

export type Queryable = Pick<pg.ClientBase, 'query'>;

/**
 * Most claims, or finishes, of a process sent as one call of claim_nodes or
 * finish_nodes. Each call's cost is a fixed part (a round trip, a commit, the
 * function's executor start) and a part per node that no longer grows with
 * the batch (migration 15), so larger batches cost less per node: an agent
 * pool with a claim-ahead of 500 sends batches of a few hundred (9,507 against
 * 5,308 one-node runs/s with a queue of 16, 2026-11-29). A batch holds its
 * runs' row locks until it commits, so this also bounds how long another
 * finish of one of those runs may wait: a batch of 512 one-node runs takes
 * about 30 ms on a 2-core machine.
 */
export const MAX_BATCH_CALLS = 512;

/** A failed attempt that may be repeated: the connection broke or the server refused service. */
export function isConnectionError(e: unknown): boolean {
  if (e instanceof UnavailableError) return true;
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (code.startsWith('08')) return true; // connection_exception class
    if (['57P01', '57P02', '57P03', '53300', '53400'].includes(code)) return true; // shutdown, starting up, too many connections
    if (/^E[A-Z]+$/.test(code))
      return [
        'ECONNREFUSED',
        'ECONNRESET',
        'ETIMEDOUT',
        'EPIPE',
        'EHOSTUNREACH',
        'ENETUNREACH',
        'EAI_AGAIN',
        'ENOTFOUND',
      ].includes(code);
  }
  return /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed|Connection closed/i.test(
    e.message,
  );
}

/** Deadlock or serialisation failure: the transaction was rolled back and may simply run again. */
function isTransient(e: unknown): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  return code === '40P01' || code === '40001';
}

function unavailable(context: string, e: unknown): UnavailableError {
  if (e instanceof UnavailableError) return e;
  const detail = e instanceof Error ? e.message || (e as { code?: string }).code || e.name : String(e);
  return new UnavailableError(`PostgreSQL unavailable during ${context}: ${detail}`, { cause: e });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Every pooled connection starts with search_path set to the schema (a
 * startup option, so no extra round trip), merged with any `options` the
 * connection string already carries.
 */
function withSearchPath(
  connectionString: string,
  schema: string,
  extra = '',
): { connectionString: string; options: string } {
  const own = `-c search_path=${schema}${extra}`;
  try {
    const url = new URL(connectionString);
    const existing = url.searchParams.get('options');
    if (existing === null) return { connectionString, options: own };
    url.searchParams.delete('options');
    return { connectionString: url.toString(), options: `${existing} ${own}` };
  } catch {
    return { connectionString, options: own };
  }
}

export class Db {
  readonly pool: pg.Pool;
  /**
   * Connections whose commits do not wait for the WAL flush, for claims only.
   * A claim lost in a server crash leaves its node READY again: its holder's
   * finish is then refused (fenced by claim id) and the node runs again,
   * which the protocol allows. What it buys: a NOTIFYing transaction holds
   * the server's notify lock until its commit is flushed, so synchronous
   * claims would queue behind one another's fsync.
   */
  private readonly fast: pg.Pool;
  private closed = false;

  constructor(readonly options: DbOptions) {
    const common = {
      max: options.poolSize,
      connectionTimeoutMillis: 5_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: 'adagio',
    };
    this.pool = new pg.Pool({ ...common, ...withSearchPath(options.connectionString, options.schema) });
    this.fast = new pg.Pool({
      ...common,
      ...withSearchPath(options.connectionString, options.schema, ' -c synchronous_commit=off'),
      max: Math.max(2, Math.ceil(options.poolSize / 2)),
    });
    // An idle connection dying (server restart) is not an error for anyone: the pool drops it.
    for (const pool of [this.pool, this.fast])
      pool.on('error', (e) =>
        options.logger.debug('idle PostgreSQL connection closed', { error: e.message }),
      );
  }

  /** A dedicated connection outside the pool (LISTEN), named so operators can tell it apart. */
  newClient(applicationName: string): pg.Client {
    return new pg.Client({
      connectionString: this.options.connectionString,
      connectionTimeoutMillis: 5_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      application_name: applicationName.slice(0, 63),
    });
  }

  /** One statement in its own transaction. No retry: see `retrying`. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    context: string,
    text: string,
    values?: unknown[],
    options: {
      asyncCommit?: boolean;
      repeatOnDeadlock?: boolean;
      /** Names a prepared statement: parsed once per connection. Only for statements whose generic plan is good. */
      prepare?: string;
    } = {},
  ): Promise<pg.QueryResult<R>> {
    this.assertOpen(context);
    for (let attempt = 1; ; attempt++) {
      try {
        const pool = options.asyncCommit ? this.fast : this.pool;
        return await (options.prepare
          ? pool.query<R>({ name: options.prepare, text, values })
          : pool.query<R>(text, values));
      } catch (e) {
        // A statement that is its own transaction was rolled back whole by a deadlock: run it again.
        if (options.repeatOnDeadlock && isTransient(e) && attempt < 10) {
          await sleep(Math.random() * 5 * attempt);
          continue;
        }
        throw isConnectionError(e) ? unavailable(context, e) : e;
      }
    }
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED unless `isolation` says
   * otherwise), repeating it after a deadlock or serialisation failure.
   */
  async tx<T>(context: string, fn: (c: pg.PoolClient) => Promise<T>, isolation?: string): Promise<T> {
    this.assertOpen(context);
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (e) {
        throw unavailable(context, e);
      }
      let broken: unknown;
      try {
        await client.query(isolation ? `BEGIN ISOLATION LEVEL ${isolation}` : 'BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (e) {
        if (isConnectionError(e)) {
          broken = e;
          throw unavailable(context, e);
        }
        await client.query('ROLLBACK').catch((re) => {
          broken = re;
        });
        if (isTransient(e) && attempt < 10) {
          await sleep(Math.random() * 5 * attempt);
          continue;
        }
        throw e;
      } finally {
        // A broken connection is destroyed rather than returned to the pool.
        client.release(broken instanceof Error ? broken : broken ? new Error(String(broken)) : undefined);
      }
    }
  }

  /**
   * Repeats an idempotent operation through connection failures until the
   * deadline; `attempt` (1-based) lets it detect that an earlier try whose
   * outcome was lost actually committed.
   */
  async retrying<T>(context: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.options.retryForMs;
    let delay = 50;
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (this.closed || !isConnectionError(e) || Date.now() + delay > deadline)
          throw isConnectionError(e) ? unavailable(context, e) : e;
        this.options.logger.debug('PostgreSQL operation failed; retrying', {
          context,
          error: (e as Error).message,
        });
        await sleep(delay);
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  async end(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.pool.end(), this.fast.end()]);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private assertOpen(context: string): void {
    if (this.closed) throw new UnavailableError(`PostgreSQL repository is closed (during ${context})`);
  }
}
