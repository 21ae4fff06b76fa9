import type pg from 'pg';
import type { Logger } from '../../log.js';
import type { Db } from './db.js';
import { decodeNotices, type Notice } from './notices.js';
import { PING } from './sql.js';

/** A stream's side of the LISTEN connection. */
export interface NoticeConsumer {
  /**
   * LISTEN is in effect, for the first time or again after the connection
   * was lost: anything may have changed unseen, so catch up now.
   */
  onListening(): void;
  onNotice(notice: Notice): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const HEALTH_CHECK_MS = 10_000;

/**
 * One dedicated connection per repository that LISTENs on the notice channel
 * and fans notices out to every subscribe() and watch() stream. It connects
 * while someone consumes, reconnects with backoff whenever the connection
 * drops, and then tells every consumer to catch up, so a reconnect never
 * loses a READY node.
 */
export class Listener {
  private client?: pg.Client;
  private readonly consumers = new Set<NoticeConsumer>();
  private connecting = false;
  private closed = false;
  private health?: NodeJS.Timeout;

  constructor(
    private readonly db: Db,
    private readonly channel: string,
    private readonly logger: Logger,
    /** This repository's origin id: its own notices were delivered by `deliverLocal` already. */
    private readonly origin?: string,
  ) {}

  /** A notice this process just published, to its own streams without the round trip through the server. */
  deliverLocal(notice: Notice): void {
    this.fanOut(notice);
  }

  add(consumer: NoticeConsumer): void {
    this.consumers.add(consumer);
    if (this.client) queueMicrotask(() => this.consumers.has(consumer) && consumer.onListening());
    else void this.connect();
  }

  remove(consumer: NoticeConsumer): void {
    this.consumers.delete(consumer);
  }

  get listening(): boolean {
    return this.client !== undefined;
  }

  private async connect(): Promise<void> {
    if (this.connecting || this.client || this.closed) return;
    this.connecting = true;
    let delay = 50;
    try {
      while (!this.closed && this.consumers.size > 0) {
        const client = this.db.newClient(`adagio-listen ${this.channel}`);
        client.on('error', (e) => this.lost(client, e));
        try {
          await client.connect();
          await client.query(`LISTEN "${this.channel}"`);
        } catch (e) {
          this.logger.debug('LISTEN connection failed; retrying', {
            error: (e as Error).message,
            delayMs: delay,
          });
          client.end().catch(() => {});
          await sleep(delay);
          delay = Math.min(delay * 2, 2_000);
          continue;
        }
        if (this.closed) {
          await client.end().catch(() => {});
          return;
        }
        client.on('notification', (m) => this.dispatch(m.payload));
        client.on('end', () => this.lost(client, new Error('connection ended')));
        this.client = client;
        this.health = setInterval(() => this.check(client), HEALTH_CHECK_MS);
        this.health.unref();
        this.logger.debug('listening for notices', { channel: this.channel });
        for (const c of [...this.consumers]) c.onListening();
        return;
      }
    } finally {
      this.connecting = false;
    }
  }

  /** A connection can die silently (no FIN); a periodic round trip notices. */
  private check(client: pg.Client): void {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('health check timed out')), HEALTH_CHECK_MS / 2);
    });
    Promise.race([client.query(PING), timeout])
      .catch((e: Error) => this.lost(client, e))
      .finally(() => clearTimeout(timer));
  }

  private lost(client: pg.Client, error: Error): void {
    if (client !== this.client) return;
    this.client = undefined;
    clearInterval(this.health);
    client.end().catch(() => {});
    if (this.closed) return;
    this.logger.info('LISTEN connection lost; reconnecting', { error: error.message });
    void this.connect();
  }

  private dispatch(payload: string | undefined): void {
    for (const notice of decodeNotices(payload, this.origin)) this.fanOut(notice);
  }

  private fanOut(notice: Notice): void {
    for (const c of [...this.consumers]) {
      try {
        c.onNotice(notice);
      } catch (e) {
        this.logger.warn('notice consumer failed', { error: (e as Error).message });
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.consumers.clear();
    clearInterval(this.health);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}
