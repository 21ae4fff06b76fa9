import { DynamoDbLocal, uniqueTable } from '../support/dynamodb.js';
import { EtcdCluster } from '../support/etcd.js';
import { PrivatePostgres, uniqueSchema } from '../support/postgres.js';
import type { ChaosBackend } from './harness.js';

/** A private PostgreSQL server (restartable without touching the shared one); disrupt = restart it. */
export async function chaosPostgres(): Promise<ChaosBackend> {
  const pg = await PrivatePostgres.start();
  return {
    name: 'postgres',
    args: [
      '--backend-type',
      'postgres',
      '--postgres-url',
      pg.url,
      '--postgres-schema',
      uniqueSchema('chaos'),
    ],
    disrupt: async () => {
      await pg.restart();
      return 'PostgreSQL restarted';
    },
    teardown: async () => pg.destroy(),
  };
}

/** A 3-member etcd cluster on loopback; disrupt = kill -9 one member, then bring it back. */
export async function chaosEtcd(): Promise<ChaosBackend> {
  const cluster = await EtcdCluster.start(3);
  let next = 0;
  return {
    name: 'etcd (3 members)',
    args: [
      '--backend-type',
      'etcd',
      '--etcd-addresses',
      cluster.endpoints.join(','),
      '--etcd-namespace',
      `chaos-${process.pid}/`,
    ],
    disrupt: async () => {
      const i = next++ % cluster.members.length;
      const member = cluster.members[i]!;
      await member.kill();
      // Load goes on against the two survivors for a while before the member returns.
      await new Promise((r) => setTimeout(r, 1500));
      member.start('existing');
      await member.ready();
      return `etcd member ${member.spec.name} killed -9 and restarted`;
    },
    teardown: async () => {
      // The test etcd processes are unref'd; hold the event loop open until they have exited.
      const hold = setInterval(() => {}, 1000);
      try {
        await cluster.destroy();
      } finally {
        clearInterval(hold);
      }
    },
  };
}

/**
 * A private DynamoDB Local on a data dir (-dbPath); disrupt = stop it (SIGTERM) and start it again on the
 * same data. Not kill -9: DynamoDB Local acknowledges a write a few ms before it is durable, so a kill -9
 * loses writes it acknowledged (DynamoDbLocal.restart), which DynamoDB does not do, and no engine keeps its
 * promises over a store that forgets (a finish forgotten leaves its node RUNNING under a live agent's claim:
 * seen once in 8 full chaos runs). A SIGTERM still drops every connection and request in flight and makes it
 * forget its request tokens, and loses acknowledged writes about 15 times less often.
 */
export async function chaosDynamoDb(): Promise<ChaosBackend> {
  const server = await DynamoDbLocal.start({ persistent: true });
  // DynamoDB Local takes any credentials; the SDK's chain (which the daemons inherit) must find some.
  process.env.AWS_ACCESS_KEY_ID ??= 'local';
  process.env.AWS_SECRET_ACCESS_KEY ??= 'local';
  return {
    name: 'dynamodb (DynamoDB Local)',
    args: [
      '--backend-type',
      'dynamodb',
      '--dynamodb-endpoint',
      server.endpoint,
      '--dynamodb-table',
      uniqueTable('chaos'),
      '--dynamodb-region',
      'us-east-1',
    ],
    disrupt: async () => {
      await server.restart('SIGTERM');
      return 'DynamoDB Local stopped and restarted on its data';
    },
    teardown: async () => {
      const hold = setInterval(() => {}, 1000);
      try {
        await server.kill();
      } finally {
        clearInterval(hold);
      }
    },
  };
}
