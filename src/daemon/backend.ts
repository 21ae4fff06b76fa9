import { readFileSync } from 'node:fs';
import { MemoryRepository } from '../backends/memory/index.js';
import type { Logger } from '../log.js';
import type { Repository } from '../protocol/repository.js';
import { ConfigError, type DaemonConfig } from './config.js';

/** Opens the configured backend. Backends other than memory are loaded only when chosen. */
export async function openRepository(config: DaemonConfig, logger: Logger): Promise<Repository> {
  switch (config.backendType) {
    case 'memory':
      return new MemoryRepository();
    case 'postgres': {
      const { PostgresRepository } = await import('../backends/postgres/index.js');
      return PostgresRepository.connect({
        connectionString: config.postgres.url!,
        schema: config.postgres.schema,
        logger: logger.child({ backend: 'postgres' }),
      });
    }
    case 'remote': {
      const { RemoteRepository } = await import('../backends/remote/index.js');
      return new RemoteRepository({ address: config.remote.address!, token: config.remote.token });
    }
    case 'dynamodb': {
      const { DynamoDbRepository } = await import('../backends/dynamodb/index.js');
      const d = config.dynamodb;
      return DynamoDbRepository.connect({
        table: d.table,
        region: d.region,
        endpoint: d.endpoint,
        leaseTtlMs: config.leaseTtlMs,
        logger: logger.child({ backend: 'dynamodb' }),
      });
    }
    case 'etcd': {
      const { EtcdRepository } = await import('../backends/etcd/index.js');
      const e = config.etcd;
      return EtcdRepository.connect({
        hosts: e.addresses,
        namespace: e.namespace,
        auth: e.username ? { username: e.username, password: e.password ?? '' } : undefined,
        tls:
          e.caFile || e.certFile
            ? { ca: readPem(e.caFile), cert: readPem(e.certFile), key: readPem(e.keyFile) }
            : undefined,
        leaseTtlMs: config.leaseTtlMs,
        logger: logger.child({ backend: 'etcd' }),
      });
    }
  }
}

function readPem(path: string | undefined): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(
      `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/** Where the backend lives, for the startup log line; never a password. */
export function describeBackend(config: DaemonConfig): Record<string, unknown> {
  switch (config.backendType) {
    case 'memory':
      return { backend: 'memory' };
    case 'remote':
      return { backend: 'remote', api: config.remote.address };
    case 'dynamodb':
      return {
        backend: 'dynamodb',
        table: config.dynamodb.table,
        region: config.dynamodb.region,
        endpoint: config.dynamodb.endpoint,
      };
    case 'etcd':
      return { backend: 'etcd', endpoints: config.etcd.addresses, namespace: config.etcd.namespace };
    case 'postgres':
      return {
        backend: 'postgres',
        url: redactUrl(config.postgres.url ?? ''),
        schema: config.postgres.schema,
      };
  }
}

/**
 * A connection URL fit for a log line: its password (in the authority, also
 * with an empty user name or an '@' inside it, and as a `password` query
 * parameter) replaced by ***.
 */
export function redactUrl(url: string): string {
  // The authority's password runs to its last '@' (a password may hold '@'; a host may not).
  const authority = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)@/i.exec(url);
  let out = url;
  if (authority) {
    const userinfo = authority[2]!;
    const colon = userinfo.indexOf(':');
    if (colon >= 0) out = `${authority[1]}${userinfo.slice(0, colon)}:***@${url.slice(authority[0].length)}`;
  }
  return out.replace(/([?&]password=)[^&#]*/gi, '$1***');
}
