/**
 * Does DynamoDB Local keep what it acknowledged when it is stopped? Not part
 * of `npm run bench`; it explains why the chaos suite stops DynamoDB Local
 * with SIGTERM rather than kill -9 (test/chaos/backends.ts).
 *
 *   node --import tsx bench/dynamodb-local-durability.ts [--signal SIGKILL|SIGTERM] [--restarts N]
 *
 * Eight writers commit 25-item transactions (every item tagged with its
 * transaction) while the server is stopped with the signal and restarted on
 * its data N times; then every transaction's items are counted. Prints how
 * many acknowledged transactions are gone (and how long before a stop they
 * were acknowledged) and how many were applied in part.
 */
import { parseArgs } from 'node:util';
import {
  CreateTableCommand,
  DynamoDBClient,
  ScanCommand,
  type ScanCommandOutput,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { DynamoDbLocal } from '../test/support/dynamodb.js';

function options() {
  try {
    return parseArgs({
      options: {
        signal: { type: 'string', default: 'SIGKILL' },
        restarts: { type: 'string', default: '15' },
      },
    }).values;
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
}
const values = options();
if (values.signal !== 'SIGKILL' && values.signal !== 'SIGTERM') {
  console.error(`--signal must be SIGKILL or SIGTERM, got ${values.signal}`);
  process.exit(2);
}
const signal: NodeJS.Signals = values.signal;
const restarts = Number(values.restarts);
if (!Number.isInteger(restarts) || restarts < 1) {
  console.error(`--restarts must be a whole number >= 1, got ${values.restarts}`);
  process.exit(2);
}
const ITEMS = 25;
const TABLE = 'durability';

const server = await DynamoDbLocal.start({ persistent: true });
const connect = () =>
  new DynamoDBClient({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
let client = connect();
await client.send(
  new CreateTableCommand({
    TableName: TABLE,
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
    AttributeDefinitions: [
      { AttributeName: 'pk', AttributeType: 'S' },
      { AttributeName: 'sk', AttributeType: 'S' },
    ],
    BillingMode: 'PAY_PER_REQUEST',
  }),
);

let writing = true;
let next = 0;
const acknowledged = new Map<number, number>(); // transaction → when acknowledged (ms)
const stops: number[] = [];
/** When each restart had the server answering again (ms). */
const backs: number[] = [];
const writer = async () => {
  while (writing) {
    const tx = next++;
    try {
      await client.send(
        new TransactWriteItemsCommand({
          TransactItems: Array.from({ length: ITEMS }, (_, i) => ({
            Put: {
              TableName: TABLE,
              Item: { pk: { S: `p${i % 5}` }, sk: { S: `${tx}-${i}` }, tx: { N: String(tx) } },
            },
          })),
        }),
      );
      acknowledged.set(tx, Date.now());
    } catch {
      await new Promise((r) => setTimeout(r, 20)); // the server is down: try again shortly
    }
  }
};
const writers = Array.from({ length: 8 }, writer);
for (let k = 0; k < restarts; k++) {
  await new Promise((r) => setTimeout(r, 1_500 + Math.random() * 1_000));
  stops.push(Date.now());
  await server.restart(signal);
  backs.push(Date.now());
}
writing = false;
await Promise.all(writers);

client = connect();
const found = new Map<number, number>();
let from: ScanCommandOutput['LastEvaluatedKey'];
do {
  const page = await client.send(new ScanCommand({ TableName: TABLE, ExclusiveStartKey: from }));
  for (const item of page.Items ?? [])
    found.set(Number(item.tx!.N), (found.get(Number(item.tx!.N)) ?? 0) + 1);
  from = page.LastEvaluatedKey;
} while (from);

const partial = [...found.values()].filter((n) => n !== ITEMS).length;
const gone = [...acknowledged.keys()].filter((tx) => found.get(tx) !== ITEMS);
console.log(
  `${signal}, ${stops.length} restarts: ${acknowledged.size} transactions acknowledged, ${gone.length} of them gone ` +
    `after the restarts, ${partial} applied in part`,
);
for (const tx of gone) {
  const at = acknowledged.get(tx)!;
  const stop = stops.find((s) => s >= at);
  const back = backs.findLast((b) => b <= at);
  console.log(
    `  transaction ${tx} (${found.get(tx) ?? 0} items found): acknowledged ` +
      `${stop === undefined ? '?' : stop - at} ms before a stop, ${back === undefined ? '?' : at - back} ms after a restart`,
  );
}
await server.kill();
process.exit(0);
