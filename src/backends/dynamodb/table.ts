import {
  CreateTableCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  ResourceInUseException,
  ResourceNotFoundException,
} from '@aws-sdk/client-dynamodb';
import { UnavailableError } from '../../protocol/errors.js';
import { type Db, N, S, sleep } from './db.js';
import { SCHEMA_KEY } from './items.js';

/**
 * The table and its indexes, created when missing (on-demand billing), and
 * the schema version item that guards upgrades: a process refuses a table
 * written by a newer schema than it knows.
 *
 * One table, keys `pk`/`sk` (strings). Two sparse global secondary indexes:
 * `ready` (rt = runtime, rk = run/node) holds only READY and orphaned nodes,
 * for subscribers' catch-up; `runs` (lpk, lsk = created-at/run id) holds only
 * run headers, for listing newest first. Both are eventually consistent: they
 * find candidates, the base items decide.
 */
/**
 * 2: claims recorded one item per claim transaction (claim-records.ts), a
 * node's latest attempt kept in the node item (`la`); a process of version 1
 * would neither orphan such claims nor see such attempts.
 * 3: a small run's WAITING nodes kept in one `w#` item until each is first
 * written (waiting.ts); a process of version 2 would find them missing.
 */
export const SCHEMA_VERSION = 3;
export const READY_INDEX = 'ready';
export const RUNS_INDEX = 'runs';

export async function ensureTable(db: Db): Promise<void> {
  const exists = await describe(db);
  if (!exists) {
    try {
      await db.call(() =>
        db.client.send(
          new CreateTableCommand({
            TableName: db.table,
            BillingMode: 'PAY_PER_REQUEST',
            AttributeDefinitions: [
              { AttributeName: 'pk', AttributeType: 'S' },
              { AttributeName: 'sk', AttributeType: 'S' },
              { AttributeName: 'rt', AttributeType: 'S' },
              { AttributeName: 'rk', AttributeType: 'S' },
              { AttributeName: 'lpk', AttributeType: 'S' },
              { AttributeName: 'lsk', AttributeType: 'S' },
            ],
            KeySchema: [
              { AttributeName: 'pk', KeyType: 'HASH' },
              { AttributeName: 'sk', KeyType: 'RANGE' },
            ],
            GlobalSecondaryIndexes: [
              {
                IndexName: READY_INDEX,
                KeySchema: [
                  { AttributeName: 'rt', KeyType: 'HASH' },
                  { AttributeName: 'rk', KeyType: 'RANGE' },
                ],
                Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['v', 'ev'] },
              },
              {
                IndexName: RUNS_INDEX,
                KeySchema: [
                  { AttributeName: 'lpk', KeyType: 'HASH' },
                  { AttributeName: 'lsk', KeyType: 'RANGE' },
                ],
                Projection: {
                  ProjectionType: 'INCLUDE',
                  NonKeyAttributes: ['d', 'v', 'cW', 'cR', 'cU', 'cC', 'cx', 'fx', 'fn', 'rz'],
                },
              },
            ],
          }),
        ),
      );
    } catch (e) {
      // Another process created it meanwhile.
      if (!(e instanceof ResourceInUseException)) throw e;
    }
  }
  const deadline = Date.now() + 120_000;
  while ((await describe(db)) !== 'ACTIVE') {
    if (Date.now() > deadline) throw new UnavailableError(`DynamoDB table ${db.table} did not become active`);
    await sleep(200);
  }
  await checkSchema(db);
}

async function describe(db: Db): Promise<string | undefined> {
  try {
    const r = await db.call(() => db.client.send(new DescribeTableCommand({ TableName: db.table })));
    return r.Table?.TableStatus ?? 'CREATING';
  } catch (e) {
    if (e instanceof ResourceNotFoundException) return undefined;
    throw e;
  }
}

/** Writes the schema version when absent; refuses a table of a newer schema. */
async function checkSchema(db: Db): Promise<void> {
  await db.update(SCHEMA_KEY, {
    UpdateExpression: 'SET version = :v',
    ConditionExpression: 'attribute_not_exists(version)',
    ExpressionAttributeValues: { ':v': N(SCHEMA_VERSION) },
  });
  const item = await db.get(SCHEMA_KEY);
  const version = Number(item?.version?.N ?? 0);
  if (version > SCHEMA_VERSION)
    throw new UnavailableError(
      `DynamoDB table ${db.table} has schema version ${version}; this adagiod knows up to ${SCHEMA_VERSION}: upgrade adagiod`,
    );
  if (version < SCHEMA_VERSION)
    await db.update(SCHEMA_KEY, {
      UpdateExpression: 'SET version = :v',
      ConditionExpression: 'version = :old',
      ExpressionAttributeValues: { ':v': N(SCHEMA_VERSION), ':old': N(version) },
    });
}

export async function deleteTable(db: Db): Promise<void> {
  await db.client.send(new DeleteTableCommand({ TableName: db.table }));
}

export { S };
