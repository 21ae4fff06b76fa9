import type { Logger } from '../../log.js';
import type { Metadata, NodeStatus, RunConclusion, RunStatus } from '../../model/index.js';
import type { Db } from './db.js';
import { NOTIFY_MANY } from './sql.js';

/**
 * The wake-up sent with NOTIFY once a transaction has committed: one per
 * transaction and run, small. It carries each changed node's new state minus
 * the bulky parts (attempt outputs, inputs: immutable once written, so a
 * watcher reads them later and still gets the state as of this transition),
 * and the READY / orphaned nodes for subscribers. A lost notice costs a
 * catch-up query, never correctness: listeners catch up on every (re)LISTEN.
 */
export interface NodeDelta {
  /** Node name. */
  n: string;
  /** The node row's version after the change: watchers skip what they have seen. */
  v: number;
  s: NodeStatus;
  /** Number of attempts. */
  a: number;
  /** started_at / finished_at, ms. */
  st?: number | null;
  ft?: number | null;
  /** The live claim: id, agent, metadata, orphaned. */
  c?: { id: string; ag: string; md: Metadata; o?: boolean } | null;
  /** When a READY node waiting out its retry delay becomes claimable, ms. */
  na?: number | null;
}

export interface Notice {
  /** Run id, or '*' for "anything may have changed". */
  r: string;
  /** The run's status (and conclusion) right after the transaction. */
  rs?: RunStatus;
  rc?: RunConclusion;
  ch?: NodeDelta[];
  /** [node, runtime] that became READY. */
  rd?: [string, string][];
  /** [node, runtime] whose claim was orphaned. */
  or?: [string, string][];
  /** Nodes whose running attempt streamed more output: watchers read what they have not sent. */
  out?: string[];
  /** Node changes left out (too many): watchers re-read the run. */
  all?: 1;
  /** READY/orphaned nodes left out: subscribers query the run. */
  cu?: 1;
}

/** The least time between two NOTIFY statements of one repository while notices keep coming. */
const NOTIFY_PACE_MS = 4;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** NOTIFY payloads must stay under 8000 bytes; leave room for the channel name. */
export const MAX_PAYLOAD = 7_000;

/**
 * Whether `text` fits in `bytes` as the server counts it: UTF-8 bytes, not
 * characters (a node name of 256 CJK characters is 768 bytes). A payload
 * over the limit fails its whole NOTIFY statement, and with it every notice
 * of the flush. A string of n UTF-16 units is at most 3n bytes, so most
 * notices are never measured.
 */
export function fitsIn(text: string, bytes: number): boolean {
  return text.length * 3 <= bytes || Buffer.byteLength(text, 'utf8') <= bytes;
}

/** Drops detail, in stages, until the notice fits. */
export function encodeNotice(notice: Notice): string {
  let text = JSON.stringify(notice);
  if (fitsIn(text, MAX_PAYLOAD)) return text;
  const { ch: _, ...rest } = notice;
  text = JSON.stringify({ ...rest, all: 1 } satisfies Notice);
  if (fitsIn(text, MAX_PAYLOAD)) return text;
  return JSON.stringify({
    r: notice.r,
    rs: notice.rs,
    rc: notice.rc,
    all: 1,
    cu: 1,
  } satisfies Notice);
}

/**
 * A notice as payloads that each fit: a batch's notice about many nodes of
 * one run is split into several (halving its changes and READY / orphaned
 * lists) rather than dropping to "re-read the run", which would make each
 * watcher's cost grow with the run (rule 9). Every part but the last leaves
 * the run RUNNING, since a watcher closes on COMPLETED.
 */
export function encodeNotices(notice: Notice): string[] {
  const text = JSON.stringify(notice);
  if (fitsIn(text, MAX_PAYLOAD)) return [text];
  const items: ['ch' | 'rd' | 'or', unknown][] = [
    ...(notice.ch ?? []).map((x) => ['ch', x] as ['ch', unknown]),
    ...(notice.rd ?? []).map((x) => ['rd', x] as ['rd', unknown]),
    ...(notice.or ?? []).map((x) => ['or', x] as ['or', unknown]),
  ];
  if (notice.all || notice.cu || notice.out || items.length < 2) return [encodeNotice(notice)];
  const half = Math.ceil(items.length / 2);
  const part = (from: number, to: number) => {
    const of = (k: string) => items.slice(from, to).flatMap(([key, x]) => (key === k ? [x] : []));
    return {
      ch: of('ch') as NodeDelta[],
      rd: of('rd') as [string, string][],
      or: of('or') as [string, string][],
    };
  };
  const first: Notice = {
    r: notice.r,
    rs: notice.rs === 'COMPLETED' ? 'RUNNING' : notice.rs,
    ...part(0, half),
  };
  const rest: Notice = { ...notice, ...part(half, items.length) };
  return [...encodeNotices(first), ...encodeNotices(rest)];
}

/**
 * One NOTIFY payload: the notices of one flush that fit, with the sending
 * repository's origin id first. That repository delivered them to its own
 * streams when it published them, so it drops the echo LISTEN brings back
 * by the payload's first bytes, without parsing it.
 */
interface Envelope {
  o?: string;
  b: Notice[];
}

/** The envelope's opening, up to its notices: `{"o":…,"b":[`. */
export function envelopeHead(origin: string | undefined): string {
  return origin === undefined ? '{"b":[' : `{"o":${JSON.stringify(origin)},"b":[`;
}

/**
 * Packs encoded notices into as few payloads under MAX_PAYLOAD as their order allows. Each is JSON
 * (JSON.stringify escapes every line break), so the payloads can travel one per line (NOTIFY_MANY).
 */
export function packNotices(encoded: string[], origin: string | undefined): string[] {
  const head = envelopeHead(origin);
  const payloads: string[] = [];
  let body: string[] = [];
  const headBytes = Buffer.byteLength(head, 'utf8') + 2;
  let size = headBytes;
  for (const e of encoded) {
    const bytes = Buffer.byteLength(e, 'utf8'); // as the server counts them (see fitsIn)
    if (body.length > 0 && size + 1 + bytes > MAX_PAYLOAD) {
      payloads.push(`${head}${body.join(',')}]}`);
      body = [];
      size = headBytes;
    }
    body.push(e);
    size += bytes + 1;
  }
  if (body.length > 0) payloads.push(`${head}${body.join(',')}]}`);
  return payloads;
}

/** The notices of a payload, none when it is this process's own (`origin`) or not a notice. */
export function decodeNotices(payload: string | undefined, origin?: string): Notice[] {
  if (!payload || (origin !== undefined && payload.startsWith(envelopeHead(origin)))) return [];
  try {
    const p = JSON.parse(payload) as Envelope | (Notice & { o?: string });
    if ('b' in p && Array.isArray(p.b)) return p.b.filter((n) => typeof n?.r === 'string');
    // One bare notice, as processes before migration 12 send them (a rolling upgrade).
    return 'r' in p && typeof p.r === 'string' && (origin === undefined || p.o !== origin) ? [p] : [];
  } catch {
    return [];
  }
}

/**
 * Sends notices after the transaction that made the change has committed,
 * in a transaction of their own that does not wait for the WAL flush. A
 * NOTIFYing transaction holds the server's notify lock until its commit is
 * flushed, so NOTIFY inside every durable transaction would make them all
 * queue behind one another's fsync. The price: a process that dies between
 * the two loses the notice; listeners catch up on every (re)LISTEN, and
 * subscribers also re-query periodically (Streams), so the node is seen later.
 *
 * Notices are coalesced per repository: while one NOTIFY round trip is in
 * flight, later notices wait and then go together in the next one, packed
 * into as few payloads as fit (one wake-up per batch, docs/design.md: each
 * NOTIFY is queued, signalled to every listener and parsed by each, so their
 * count, not their size, is what costs), in the order they were published. An idle
 * process pays no delay; a busy one sends far fewer statements than it makes
 * transitions.
 */
export class Publisher {
  private pending: string[] = [];
  private waiters: (() => void)[] = [];
  private flushing = false;

  constructor(
    private readonly db: Db,
    private readonly channel: string,
    private readonly logger: Logger,
    /** Stamped on every payload sent, so this process drops its own echo (see packNotices). */
    private readonly origin?: string,
    /** Delivers notices to this process's streams at once. */
    private readonly local?: (notice: Notice) => void,
  ) {}

  /**
   * Resolves once the notices were sent (or sending failed, which is logged:
   * listeners catch up). Transitions on the hot path do not wait for it: the
   * order of this process's notices is kept either way.
   */
  publish(notices: Notice[]): Promise<void> {
    if (notices.length === 0) return Promise.resolve();
    this.post(notices);
    return this.idle();
  }

  /**
   * publish() for callers that do not wait for the NOTIFY (the per-node
   * claims and finishes): the same order and delivery, without a promise each.
   */
  post(notices: Notice[]): void {
    for (const n of notices) {
      const encoded = encodeNotices(n);
      if (encoded.length === 1) this.pending.push(encoded[0]!);
      else this.pending.push(...encoded);
      this.local?.(n);
    }
    if (notices.length > 0 && !this.flushing) void this.flush();
  }

  /** Resolves once every notice published so far has been sent (close() waits for this). */
  idle(): Promise<void> {
    if (!this.flushing && this.pending.length === 0) return Promise.resolve();
    const sent = new Promise<void>((resolve) => this.waiters.push(resolve));
    if (!this.flushing) void this.flush();
    return sent;
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.pending.length > 0 || this.waiters.length > 0) {
        const encoded = this.pending;
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        if (encoded.length > 0)
          try {
            await this.db.query(
              'notify',
              NOTIFY_MANY,
              [this.channel, packNotices(encoded, this.origin).join('\n')],
              {
                asyncCommit: true,
                prepare: 'adagio_notify_lines',
              },
            );
          } catch (e) {
            this.logger.debug('notices not sent; listeners will catch up', {
              count: encoded.length,
              error: (e as Error).message,
            });
          }
        for (const w of waiters) w();
        // Busy: let the next batch fill a little. This process's own streams have the notices already
        // (`local`), so only other processes wait, a few ms; NOTIFY statements stop rivalling transitions.
        if (encoded.length > 0 && this.pending.length > 0) await sleep(NOTIFY_PACE_MS);
      }
    } finally {
      this.flushing = false;
    }
  }
}

/** A number from a bigint column (pg returns those as strings). */
export function ms(v: string | number | null | undefined): number | null {
  return v === null || v === undefined ? null : Number(v);
}
