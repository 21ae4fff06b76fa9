/**
 * NOTIFY payloads (notices.ts): a batch's notice about many nodes is split
 * into parts that fit, never dropped to "re-read the run" (which costs a
 * watcher O(run)), and a flush's notices travel packed in few payloads that
 * the sending process recognises as its own without parsing them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  decodeNotices,
  encodeNotices,
  MAX_PAYLOAD,
  type Notice,
  packNotices,
} from '../../src/backends/postgres/notices.js';

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
});
