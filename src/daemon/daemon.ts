import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { AgentPool } from '../agent/index.js';
import { ApiMetrics } from '../api/metrics.js';
import { ApiServer } from '../api/server.js';
import type { Logger } from '../log.js';
import { graphFromJsonText } from '../model/wire.js';
import { packageRoot } from '../package-root.js';
import type { Repository } from '../protocol/repository.js';
import { builtinRuntimes } from '../runtimes/index.js';
import { Scheduler } from '../scheduler/scheduler.js';
import { describeBackend, openRepository } from './backend.js';
import { ConfigError, type DaemonConfig } from './config.js';
import { instrumentRepository } from './instrument.js';

const EXAMPLE = join(packageRoot(), 'examples', 'workflows', 'demo.json');
const RETENTION_SWEEP_MS = 60_000;

/**
 * Binds and releases the API's address, so a port already taken (another
 * adagiod, say) is reported at once, before the agents start. The API binds
 * it again right after; losing that race still fails with the same error.
 */
export async function checkCanListen(host: string, port: number): Promise<void> {
  if (port === 0) return; // any free port: nothing to check
  const probe = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why =
      err.code === 'EADDRINUSE'
        ? 'the address is already in use (another adagiod?); choose another with --listen'
        : err.code === 'EACCES'
          ? 'permission denied (ports below 1024 need privileges); choose another with --listen'
          : err.code === 'EADDRNOTAVAIL'
            ? 'this machine has no such address; choose another with --listen'
            : err.message;
    throw new ConfigError(`cannot listen on ${host}:${port}: ${why}`);
  }
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

/**
 * One adagiod process: a backend, and the API server, the agent pool or both
 * on top of it. Start order is backend → pool → API; stop is the reverse of
 * what matters for users: stop serving, stop claiming, let work finish.
 */
export class Daemon {
  api: ApiServer | undefined;
  pool: AgentPool | undefined;
  repository: Repository | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private scheduler: Scheduler | undefined;
  private stopping: Promise<void> | undefined;

  constructor(
    readonly config: DaemonConfig,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    const c = this.config;
    const repo = await openRepository(c, this.logger);
    this.repository = repo;
    await repo.ping();
    this.logger.info('backend ready', describeBackend(c));
    // Fail before agents claim work a daemon that cannot serve would then hold until it stops.
    if (c.roles.includes('api')) await checkCanListen(c.listen.host, c.listen.port);
    const metrics = new ApiMetrics({ processMetrics: true });

    if (c.roles.includes('agent')) {
      const all = builtinRuntimes({
        execAllow: c.execAllow.length > 0 ? c.execAllow : undefined,
        execPassEnv: c.execPassEnv,
        execUnsafeEnv: c.execUnsafeEnv,
      });
      const unknown = c.runtimes.filter((r) => !all.get(r));
      if (unknown.length > 0)
        throw new ConfigError(
          `unknown runtime ${unknown.join(', ')}; this build has ${all.names.join(', ')}`,
        );
      this.pool = new AgentPool({
        repository: instrumentRepository(repo, metrics),
        runtimes: c.runtimes.map((r) => all.get(r)!),
        concurrency: c.agents,
        claimAhead: c.claimAhead,
        leaseTtlMs: c.leaseTtlMs,
        runtimeTimeoutMs: c.runtimeTimeoutMs,
        logger: this.logger.child({ component: 'agent' }),
      });
      await this.pool.start();
      this.logger.info('agents started', {
        agents: c.agents,
        runtimes: c.runtimes,
        lease: this.pool.leaseId,
      });
    }

    if (c.roles.includes('api')) {
      this.api = new ApiServer({
        repository: repo,
        logger: this.logger.child({ component: 'api' }),
        tokens: c.tokens,
        agentTokens: c.agentTokens,
        allowedHosts: c.allowedHosts,
        maxBodyBytes: c.maxBodyBytes,
        maxQueuedNodes: c.maxQueuedNodes,
        ui: c.ui,
        corsOrigins: c.corsOrigins,
        metrics,
      });
      const address = await this.api.listen(c.listen.host, c.listen.port);
      this.logger.info('listening', {
        address,
        ui: c.ui ? `${address}/` : false,
        auth: c.tokens.length > 0 ? (c.agentTokens.length > 0 ? 'api and agent tokens' : 'api token') : false,
      });
      if (c.tokens.length === 0)
        this.logger.warn(
          'no -api-token: anyone who can connect to this address can start runs, and exec runs ' +
            (c.execAllow.length > 0 ? `the allowed commands (${c.execAllow.join(', ')})` : 'any command') +
            ` as this user; only loopback is allowed, and browsers from other sites are refused (docs/security.md)`,
          { address },
        );
    }

    // Through a remote backend the schedules are fired by the API it talks to, next to the store.
    if (c.roles.includes('api') && c.schedules && c.backendType !== 'remote') {
      this.scheduler = new Scheduler(repo, { logger: this.logger.child({ component: 'scheduler' }) });
      this.scheduler.start();
    }

    if (c.retentionMs > 0) {
      const sweep = () =>
        repo
          .deleteCompletedRunsBefore(Date.now() - c.retentionMs)
          .then((n) => n > 0 && this.logger.info('retention: deleted completed runs', { count: n }))
          .catch((e) => this.logger.warn('retention sweep failed', { error: (e as Error).message }));
      void sweep();
      this.retentionTimer = setInterval(sweep, RETENTION_SWEEP_MS);
      this.retentionTimer.unref();
    }

    if (c.example) {
      const run = await repo.start(graphFromJsonText(readFileSync(EXAMPLE, 'utf8')));
      this.logger.info('example run started', {
        run: run.id,
        ui: this.api ? `${this.api.address}/runs/${run.id}` : undefined,
      });
    }
  }

  /** Idempotent; resolves when everything is closed. */
  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.retentionTimer);
    await this.scheduler
      ?.stop()
      .catch((e) => this.logger.warn('scheduler stop failed', { error: String(e) }));
    this.logger.info('shutting down', { graceMs: this.config.gracePeriodMs });
    await this.api?.close().catch((e) => this.logger.warn('api close failed', { error: String(e) }));
    await this.pool
      ?.stop({ graceMs: this.config.gracePeriodMs })
      .catch((e) => this.logger.warn('agent pool stop failed', { error: String(e) }));
    await this.repository
      ?.close()
      .catch((e) => this.logger.warn('backend close failed', { error: String(e) }));
    this.logger.info('stopped');
  }
}
