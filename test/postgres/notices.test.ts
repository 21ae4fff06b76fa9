/**
 * NOTIFY payloads (notices.ts): a batch's notice about many nodes is split
 * into parts that fit, never dropped to "re-read the run" (which costs a
 * watcher O(run)), and a flush's notices travel packed in few payloads that
 * the sending process recognises as its own without parsing them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { Db } from '../../src/backends/postgres/db.js';
import {
  decodeNotices,
  encodeNotices,
  MAX_PAYLOAD,
  type Notice,
  Publisher,
  packNotices,
} from '../../src/backends/postgres/notices.js';
import { silentLogger } from '../../src/log.js';
import { POSTGRES_URL, requirePostgres } from '../support/postgres.js';

/**
 * A publisher's database and a LISTEN connection on a channel of this process
 * on the real server, for `fn`; `heard` collects the payloads the listener gets.
 */
async function throughServer(
  name: string,
  fn: (s: { channel: string; db: Db; heard: string[] }) => Promise<void>,
): Promise<void> {
  await requirePostgres();
  const channel = `adagio_notices_${name}_${process.pid}`;
  const listener = new pg.Client({ connectionString: POSTGRES_URL });
  await listener.connect();
  const db = new Db({
    connectionString: POSTGRES_URL,
    schema: 'public',
    poolSize: 2,
    retryForMs: 5_000,
    logger: silentLogger,
  });
  try {
    const heard: string[] = [];
    listener.on('notification', (m) => heard.push(m.payload ?? ''));
    await listener.query(`LISTEN ${channel}`);
    await fn({ channel, db, heard });
  } finally {
    await listener.end();
    await db.end();
  }
}

describe('PostgreSQL notices', () => {
  it('a notice too big for one payload is split, the run completing only in the last part', () => {
    const notice: Notice = {
      r: 'run',
      rs: 'COMPLETED',
      rc: 'SUCCESS',
      ch: Array.from({ length: 300 }, (_, i) => ({
        n: `node-${i}`,
        v: 2,
        s: 'COMPLETED' as const,
        a: 1,
        ft: 5,
      })),
      rd: Array.from({ length: 40 }, (_, i) => [`ready-${i}`, 'work'] as [string, string]),
    };
    const parts = encodeNotices(notice).map((p) => JSON.parse(p) as Notice);
    assert.ok(parts.length > 1);
    for (const p of encodeNotices(notice)) assert.ok(p.length <= MAX_PAYLOAD);
    assert.deepEqual(
      parts.flatMap((p) => p.ch ?? []),
      notice.ch,
    );
    assert.deepEqual(
      parts.flatMap((p) => p.rd ?? []),
      notice.rd,
    );
    assert.ok(parts.every((p) => !p.all && !p.cu));
    assert.deepEqual(
      parts.map((p) => p.rs),
      [...parts.slice(1).map(() => 'RUNNING'), 'COMPLETED'],
    );
    assert.equal(parts.at(-1)!.rc, 'SUCCESS');
  });

  it('packed notices arrive in order for others and are dropped by their sender', () => {
    const notices = Array.from({ length: 500 }, (_, i) =>
      JSON.stringify({ r: `run-${i}`, rd: [['a', 'work']] }),
    );
    const payloads = packNotices(notices, 'me');
    assert.ok(payloads.length < 10);
    for (const p of payloads) assert.ok(p.length <= MAX_PAYLOAD + 100);
    assert.deepEqual(
      payloads.flatMap((p) => decodeNotices(p, 'other')).map((n) => n.r),
      notices.map((_, i) => `run-${i}`),
    );
    assert.deepEqual(
      payloads.flatMap((p) => decodeNotices(p, 'me')),
      [],
    );
  });

  it('payloads are measured in bytes: notices of multibyte names fit, split and packed under the limit', () => {
    const cjk = (i: number) => `処理${i}${'段'.repeat(240)}`; // 243 characters, 729 bytes
    const notice: Notice = {
      r: 'run',
      rs: 'COMPLETED',
      rc: 'FAIL',
      ch: Array.from({ length: 12 }, (_, i) => ({ n: cjk(i), v: 2, s: 'COMPLETED' as const, a: 0, ft: 2 })),
    };
    assert.ok(JSON.stringify(notice).length <= MAX_PAYLOAD, 'under the limit in characters');
    const parts = encodeNotices(notice);
    assert.ok(parts.length > 1, 'but split: over it in bytes');
    for (const p of parts) assert.ok(Buffer.byteLength(p) <= MAX_PAYLOAD, `${Buffer.byteLength(p)} bytes`);
    assert.deepEqual(
      parts.flatMap((p) => (JSON.parse(p) as Notice).ch ?? []),
      notice.ch,
    );
    const payloads = packNotices([...parts, ...parts, ...parts], 'me');
    for (const p of payloads) assert.ok(Buffer.byteLength(p) <= MAX_PAYLOAD, `${Buffer.byteLength(p)} bytes`);
    // One change too big for any payload (claim metadata is up to 64 KiB): the notice says "re-read the run".
    const huge: Notice = {
      r: 'run',
      rs: 'RUNNING',
      ch: [{ n: 'a', v: 2, s: 'RUNNING', a: 0, c: { id: 'c', ag: 'g', md: { k: ['é'.repeat(4_000)] } } }],
    };
    const [only, ...none] = encodeNotices(huge);
    assert.equal(none.length, 0);
    assert.ok(Buffer.byteLength(only!) <= MAX_PAYLOAD);
    assert.equal((JSON.parse(only!) as Notice).all, 1);
  });

  it('multibyte notices over the limit in bytes reach a listener, and the notices sent with them too', async () => {
    const failures: string[] = [];
    const logger = { ...silentLogger, debug: (msg: string) => failures.push(msg) };
    await throughServer('bytes', async ({ channel, db, heard }) => {
      const big: Notice = {
        r: 'big',
        rs: 'COMPLETED',
        rc: 'FAIL',
        ch: Array.from({ length: 12 }, (_, i) => ({
          n: `処理${i}${'段'.repeat(240)}`,
          v: 2,
          s: 'COMPLETED' as const,
          a: 0,
          ft: 2,
        })),
      };
      const small: Notice = { r: 'small', rs: 'RUNNING', rd: [['next', 'work']] };
      await new Publisher(db, channel, logger, 'sender').publish([big, small]);
      const got = () => heard.flatMap((p) => decodeNotices(p));
      for (let i = 0; i < 500 && !got().some((n) => n.r === 'small'); i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(failures, [], 'no NOTIFY failed');
      assert.deepEqual(
        got()
          .filter((n) => n.r === 'big')
          .flatMap((n) => n.ch ?? []),
        big.ch,
      );
      assert.equal(
        got()
          .filter((n) => n.r === 'big')
          .at(-1)?.rs,
        'COMPLETED',
      );
      assert.deepEqual(
        got().find((n) => n.r === 'small'),
        small,
      );
    });
  });

  it('notices reach a listener intact through the server, whatever their strings hold, many per statement', async () => {
    await throughServer('test', async ({ channel, db, heard }) => {
      // Line breaks, quotes, backslashes, braces and commas (an array literal's own syntax), a NUL, emoji.
      const tricky = ['a\nb', 'say "hi"', 'C:\\temp\\', '{x,y}', 'NULL', '\u0000', '🎻 adagio', '\r\n'];
      const notices: Notice[] = Array.from({ length: 300 }, (_, i) => ({
        r: `run-${i}`,
        rs: 'RUNNING',
        ch: [
          {
            n: `node ${tricky[i % tricky.length]}`,
            v: 2,
            s: 'RUNNING',
            a: 1,
            c: { id: 'c', ag: 'g', md: { k: tricky } },
          },
        ],
      }));
      const publisher = new Publisher(db, channel, silentLogger, 'sender');
      await publisher.publish(notices);
      const expected = notices.map((n) => JSON.parse(JSON.stringify(n)) as Notice);
      for (let i = 0; i < 500 && heard.flatMap((p) => decodeNotices(p)).length < notices.length; i++)
        await new Promise((r) => setTimeout(r, 10));
      assert.ok(heard.length > 1 && heard.length < 100, `${heard.length} payloads`);
      assert.deepEqual(
        heard.flatMap((p) => decodeNotices(p, 'someone else')),
        expected,
      );
      assert.deepEqual(
        heard.flatMap((p) => decodeNotices(p, 'sender')),
        [],
      );
    });
  });
});
