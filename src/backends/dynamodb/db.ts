import { randomUUID } from 'node:crypto';
import {
  type AttributeValue,
  BatchGetItemCommand,
  BatchWriteItemCommand,
  DynamoDBClient,
  type DynamoDBClientConfig,
  QueryCommand,
  type QueryCommandInput,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
} from '@aws-sdk/client-dynamodb';
import { TooLargeError, UnauthenticatedError, UnavailableError } from '../../protocol/errors.js';
import { DYNAMODB_MAX_BATCH_GET, DYNAMODB_MAX_BATCH_WRITE, MAX_TXN_BYTES, MAX_TXN_ITEMS } from './limits.js';

/**
 * The DynamoDB client, reduced to what the backend needs: consistent reads,
 * queries, batch writes of idempotent puts, and transactions whose outcome is
 * "committed" or "a condition failed" (the caller re-reads and decides again).
 * Errors map to the protocol's.
 */
export type Item = Record<string, AttributeValue>;
export type Key = { pk: string; sk: string };

export const S = (s: string): AttributeValue => ({ S: s });
export const N = (n: number): AttributeValue => ({ N: String(n) });
export const B = (b: Uint8Array): AttributeValue => ({ B: b });

export function keyOf(k: Key): Item {
  return { pk: S(k.pk), sk: S(k.sk) };
}

/** One transaction being built: its items, within the budgets of limits.ts. */
export class Tx {
  readonly items: TransactWriteItem[] = [];
  bytes = 0;

  constructor(private readonly table: string) {}

  get size(): number {
    return this.items.length;
  }

  /** Puts `head`'s items before this transaction's own. */
  prepend(head: Tx): void {
    this.items.unshift(...head.items);
    this.bytes += head.bytes;
  }

  /** Whether `items` more items of `bytes` fit. */
  fits(items: number, bytes = 0): boolean {
    return this.items.length + items <= MAX_TXN_ITEMS && this.bytes + bytes <= MAX_TXN_BYTES;
  }

  /** A put, conditioned on the item's version (`v`), or on its absence when `v` is undefined. */
  put(item: Item, expectV?: number | 'any'): void {
    const cond =
      expectV === 'any'
        ? {}
        : expectV === undefined
          ? { ConditionExpression: 'attribute_not_exists(pk)' }
          : { ConditionExpression: 'v = :v', ExpressionAttributeValues: { ':v': N(expectV) } };
    this.items.push({ Put: { TableName: this.table, Item: item, ...cond } });
    this.bytes += itemBytes(item);
  }

  update(key: Key, expr: Omit<UpdateItemCommandInput, 'TableName' | 'Key'>): void {
    this.items.push({
      Update: {
        TableName: this.table,
        Key: keyOf(key),
        UpdateExpression: expr.UpdateExpression!,
        ConditionExpression: expr.ConditionExpression,
        ExpressionAttributeNames: expr.ExpressionAttributeNames,
        ExpressionAttributeValues: expr.ExpressionAttributeValues,
      },
    });
    this.bytes += 200;
  }

  /**
   * A node item's put, conditioned on the version it was read at: version 0
   * is a WAITING node not yet written (waiting.ts), so its first write is
   * conditioned on its absence.
   */
  putNode(item: Item, readV: number): void {
    this.put(item, readV === 0 ? undefined : readV);
  }

  /** The item holds version `v` (it was read and the decision rests on it). */
  checkV(key: Key, v: number): void {
    this.check(key, 'v = :v', { ':v': N(v) });
  }

  check(key: Key, cond: string, values?: Item, names?: Record<string, string>): void {
    this.items.push({
      ConditionCheck: {
        TableName: this.table,
        Key: keyOf(key),
        ConditionExpression: cond,
        ExpressionAttributeValues: values,
        ExpressionAttributeNames: names,
      },
    });
  }

  /**
   * Several puts of one item (a batch's finishes of one run that judged the
   * same dependent, each from what the one before wrote) as one, since a
   * transaction touches an item once: the last put's item under the first
   * put's condition (the version that was read). False when an item is
   * touched twice otherwise: such a transaction cannot go as one.
   */
  collapse(): boolean {
    const first = new Map<string, TransactWriteItem>();
    const kept: TransactWriteItem[] = [];
    for (const t of this.items) {
      const key = t.Put?.Item ?? t.Update?.Key ?? t.ConditionCheck?.Key ?? t.Delete!.Key!;
      const k = `${key.pk!.S}\u0000${key.sk!.S}`;
      const earlier = first.get(k);
      if (!earlier) {
        first.set(k, t);
        kept.push(t);
        continue;
      }
      if (!earlier.Put || !t.Put) return false;
      this.bytes -= itemBytes(earlier.Put.Item!);
      earlier.Put.Item = t.Put.Item;
    }
    this.items.splice(0, this.items.length, ...kept);
    return true;
  }

  /** A delete conditioned on `cond` over the item as it is. */
  delIf(key: Key, cond: string, values?: Item): void {
    this.items.push({
      Delete: {
        TableName: this.table,
        Key: keyOf(key),
        ConditionExpression: cond,
        ...(values ? { ExpressionAttributeValues: values } : {}),
      },
    });
  }

  del(key: Key, expectV?: number): void {
    this.items.push({
      Delete: {
        TableName: this.table,
        Key: keyOf(key),
        ...(expectV === undefined
          ? {}
          : { ConditionExpression: 'v = :v', ExpressionAttributeValues: { ':v': N(expectV) } }),
      },
    });
  }
}

/** Approximate stored size of an item (what DynamoDB bills and caps). */
export function itemBytes(item: Item): number {
  let n = 0;
  for (const [k, v] of Object.entries(item)) {
    n += k.length;
    if (v.S !== undefined) n += Buffer.byteLength(v.S);
    else if (v.B !== undefined) n += v.B.byteLength;
    else n += 24;
  }
  return n;
}

/**
 * What this process asked of the store, and what DynamoDB says it consumed
 * (ReturnConsumedCapacity): the benchmark divides it by nodes, so the cost
 * of a transition is measured, not guessed.
 */
export class DbCounters {
  transactions = 0;
  txItems = 0;
  /** Transactions refused (a failed condition or a conflict): their work is done again. */
  refused = 0;
  /** BatchGetItem/GetItem requests and the keys they read. */
  gets = 0;
  getKeys = 0;
  queries = 0;
  /** Items the queries returned (a subscriber's poll returns its whole READY backlog). */
  queryItems = 0;
  batchWrites = 0;
  updates = 0;
  writeUnits = 0;
  readUnits = 0;

  snapshot(): DbCounters {
    return Object.assign(new DbCounters(), this);
  }

  minus(o: DbCounters): DbCounters {
    return this.combine(o, -1);
  }

  /** Sums two spans' counts (a benchmark's slices). */
  plus(o: DbCounters): DbCounters {
    return this.combine(o, 1);
  }

  private combine(o: DbCounters, sign: 1 | -1): DbCounters {
    const d = new DbCounters();
    for (const k of Object.keys(d) as (keyof DbCounters)[])
      if (typeof d[k] === 'number')
        (d as unknown as Record<string, number>)[k] = (this[k] as number) + sign * (o[k] as number);
    return d;
  }
}

type Capacity = { CapacityUnits?: number };

/** Capacity units a request consumed, table and indexes (ReturnConsumedCapacity TOTAL). */
function units(r: { ConsumedCapacity?: Capacity[] | Capacity }): number {
  const c = r.ConsumedCapacity;
  const list = Array.isArray(c) ? c : c ? [c] : [];
  return list.reduce((n, x) => n + (x.CapacityUnits ?? 0), 0);
}

export class Db {
  readonly client: DynamoDBClient;
  readonly counters = new DbCounters();
  closed = false;

  constructor(
    readonly table: string,
    config: DynamoDBClientConfig,
  ) {
    this.client = new DynamoDBClient({ maxAttempts: 8, ...config });
  }

  tx(): Tx {
    return new Tx(this.table);
  }

  /**
   * Commits the transaction: true when it committed, false when a condition
   * failed or another transaction touched the same items (the caller reads
   * again and decides again). The client request token makes the SDK's own
   * retries of a commit whose reply was lost idempotent. `refused`, when
   * DynamoDB says which items' conditions failed (and no other transaction
   * conflicted), hears their keys. A refusal does not prove nothing landed:
   * a retry of a request that committed, sent to a DynamoDB Local that
   * restarted meanwhile (it forgets request tokens), is refused by its own
   * writes; the caller reads again and recognises its commit.
   */
  async commit(tx: Tx, refused?: (keys: Key[]) => void): Promise<boolean> {
    if (tx.items.length === 0) return true;
    const token = randomUUID();
    try {
      this.counters.transactions++;
      this.counters.txItems += tx.items.length;
      const r = await this.call(() =>
        this.client.send(
          new TransactWriteItemsCommand({
            TransactItems: tx.items,
            ClientRequestToken: token,
            ReturnConsumedCapacity: 'TOTAL',
          }),
        ),
      );
      this.counters.writeUnits += units(r);
      return true;
    } catch (e) {
      if (e instanceof TransactionCanceledException) {
        const reasons = e.CancellationReasons ?? [];
        if (
          reasons.some((r) => r.Code === 'ConditionalCheckFailed' || r.Code === 'TransactionConflict') ||
          /TransactionConflict|ConditionalCheckFailed/.test(e.message)
        ) {
          this.counters.refused++;
          if (
            refused &&
            reasons.length === tx.items.length &&
            !reasons.some((r) => r.Code === 'TransactionConflict')
          )
            refused(
              tx.items.flatMap((item, i) =>
                reasons[i]!.Code === 'ConditionalCheckFailed' ? [keyOfTxItem(item)] : [],
              ),
            );
          return false;
        }
      }
      if (
        (e as Error).name === 'TransactionInProgressException' ||
        (e as Error).name === 'IdempotentParameterMismatchException'
      )
        return false;
      throw mapError(e);
    }
  }

  /** Consistent reads of up to any number of keys (in BatchGetItem pages); missing keys are absent from the map. */
  async getMany(keys: Key[]): Promise<Map<string, Item>> {
    const out = new Map<string, Item>();
    const unique = [...new Map(keys.map((k) => [`${k.pk}\u0000${k.sk}`, k])).values()];
    for (let i = 0; i < unique.length; i += DYNAMODB_MAX_BATCH_GET) {
      let request: Item[] = unique.slice(i, i + DYNAMODB_MAX_BATCH_GET).map(keyOf);
      while (request.length > 0) {
        this.counters.gets++;
        this.counters.getKeys += request.length;
        const r = await this.call(() =>
          this.client.send(
            new BatchGetItemCommand({
              RequestItems: { [this.table]: { Keys: request, ConsistentRead: true } },
              ReturnConsumedCapacity: 'TOTAL',
            }),
          ),
        );
        this.counters.readUnits += units(r);
        for (const item of r.Responses?.[this.table] ?? []) out.set(`${item.pk!.S}\u0000${item.sk!.S}`, item);
        request = (r.UnprocessedKeys?.[this.table]?.Keys as Item[] | undefined) ?? [];
        if (request.length > 0) await sleep(20);
      }
    }
    return out;
  }

  async get(key: Key): Promise<Item | undefined> {
    return (await this.getMany([key])).get(`${key.pk}\u0000${key.sk}`);
  }

  /** Every item of a query, page after page (1 MB each). */
  async queryAll(input: Omit<QueryCommandInput, 'TableName'>): Promise<Item[]> {
    const out: Item[] = [];
    let start: Item | undefined;
    do {
      const r = await this.query({ ...input, ExclusiveStartKey: start });
      out.push(...((r.Items as Item[]) ?? []));
      start = r.LastEvaluatedKey as Item | undefined;
    } while (start);
    return out;
  }

  async query(input: Omit<QueryCommandInput, 'TableName'>) {
    this.counters.queries++;
    const r = await this.call(() =>
      this.client.send(
        new QueryCommand({ TableName: this.table, ReturnConsumedCapacity: 'TOTAL', ...input }),
      ),
    );
    this.counters.readUnits += units(r);
    this.counters.queryItems += r.Items?.length ?? 0;
    return r;
  }

  /** Items of one partition whose sort key begins with `prefix`, consistent. */
  partition(pk: string, prefix = '', extra: Omit<QueryCommandInput, 'TableName'> = {}): Promise<Item[]> {
    return this.queryAll({
      KeyConditionExpression: prefix ? 'pk = :pk AND begins_with(sk, :p)' : 'pk = :pk',
      ExpressionAttributeValues: { ':pk': S(pk), ...(prefix ? { ':p': S(prefix) } : {}) },
      ConsistentRead: true,
      ...extra,
    });
  }

  async update(key: Key, expr: Omit<UpdateItemCommandInput, 'TableName' | 'Key'>): Promise<boolean> {
    try {
      this.counters.updates++;
      const r = await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: keyOf(key),
          ReturnConsumedCapacity: 'TOTAL',
          ...expr,
        }),
      );
      this.counters.writeUnits += units(r);
      return true;
    } catch (e) {
      if ((e as Error).name === 'ConditionalCheckFailedException') return false;
      throw mapError(e);
    }
  }

  /** Idempotent puts and deletes that need not be atomic together, in BatchWriteItem pages. */
  async writeAll(puts: Item[], deletes: Key[] = []): Promise<void> {
    const reqs = [
      ...puts.map((Item) => ({ PutRequest: { Item } })),
      ...deletes.map((k) => ({ DeleteRequest: { Key: keyOf(k) } })),
    ];
    const work: Promise<void>[] = [];
    for (let i = 0; i < reqs.length; i += DYNAMODB_MAX_BATCH_WRITE) {
      work.push(
        (async () => {
          let batch = reqs.slice(i, i + DYNAMODB_MAX_BATCH_WRITE);
          while (batch.length > 0) {
            this.counters.batchWrites++;
            const r = await this.call(() =>
              this.client.send(
                new BatchWriteItemCommand({
                  RequestItems: { [this.table]: batch },
                  ReturnConsumedCapacity: 'TOTAL',
                }),
              ),
            );
            this.counters.writeUnits += units(r);
            batch = (r.UnprocessedItems?.[this.table] as typeof batch | undefined) ?? [];
            if (batch.length > 0) await sleep(20);
          }
        })(),
      );
      // A few pages in flight at once: a big start is bounded by round trips otherwise.
      if (work.length >= 8) await Promise.all(work.splice(0));
    }
    await Promise.all(work);
  }

  /**
   * Runs `fn` again while the store is unreachable (a restart, throttling),
   * with backoff, for up to 30 s; then UnavailableError. A transaction retried
   * so carries its client request token: one that committed without a reply
   * is not applied twice, and where the store forgot the token its conditions
   * fail and the caller reads what happened (claims and finishes recognise
   * their own commit).
   */
  async call<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + 30_000;
    let delay = 50;
    for (;;) {
      if (this.closed) throw new UnavailableError('dynamodb repository is closed');
      try {
        return await fn();
      } catch (e) {
        const mapped = mapError(e);
        if (!(mapped instanceof UnavailableError) || this.closed || Date.now() + delay > deadline)
          throw mapped;
        await sleep(delay);
        delay = Math.min(delay * 2, 1_000);
      }
    }
  }

  close(): void {
    this.closed = true;
    this.client.destroy();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function mapError(e: unknown): unknown {
  if (!(e instanceof Error)) return e;
  const name = e.name;
  if (/ItemCollectionSizeLimitExceeded|item size has exceeded|Item size/i.test(`${name} ${e.message}`))
    return new TooLargeError(`DynamoDB refused the request: ${e.message}`, { cause: e });
  if (
    /UnrecognizedClient|InvalidSignature|AccessDenied|ExpiredToken|security token/i.test(
      `${name} ${e.message}`,
    )
  )
    return new UnauthenticatedError(`DynamoDB refused the credentials: ${e.message}`, { cause: e });
  if (
    /ECONNREFUSED|ECONNRESET|EPIPE|socket|Throughput|Throttl|RequestLimitExceeded|ServiceUnavailable|InternalServerError|TimeoutError/i.test(
      `${name} ${e.message}`,
    )
  )
    return new UnavailableError(`DynamoDB unavailable: ${e.message}`, { cause: e });
  return e;
}

/** The map key getMany answers under. */
export const mk = (k: Key): string => `${k.pk}\u0000${k.sk}`;

/** The key of the item a transaction item writes or checks. */
function keyOfTxItem(t: TransactWriteItem): Key {
  const k = t.Put?.Item ?? t.Update?.Key ?? t.Delete?.Key ?? t.ConditionCheck?.Key;
  return { pk: k!.pk!.S!, sk: k!.sk!.S! };
}
