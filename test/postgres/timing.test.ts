/**
 * PostgreSQL computes rule 5's retry delay in SQL (retry_delay_ms, migration
 * 5) so a finish stays one round trip. This holds it to model/rules.ts
 * retryDelayMs over the shared table, and its jitter to the same bounds.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffMs, retryDelayMs } from '../../src/model/index.js';
import { DELAY_CASES } from '../support/delay-cases.js';
import { postgresSuite } from '../support/postgres.js';

describe('PostgreSQL retry_delay_ms follows the model', () => {
  const db = postgresSuite();

  const delay = async (b: unknown, retry: number): Promise<number> => {
    const { rows } = await db.client.query<{ d: string }>(
      `SELECT ${db.schema}.retry_delay_ms($1::jsonb, $2) AS d`,
      [JSON.stringify(b), retry],
    );
    return Number(rows[0]!.d);
  };

  for (const c of DELAY_CASES)
    it(`retry ${c.retry} of ${JSON.stringify(c.backoff)} waits ${c.want} ms`, async () => {
      assert.equal(retryDelayMs(c.backoff, c.retry, 0.5), c.want, 'the table agrees with the model');
      assert.equal(await delay(backoffMs(c.backoff), c.retry), c.want);
    });

  it('jitter stays within ±jitter of the delay', async () => {
    const b = backoffMs({ initial: '10s', jitter: 0.2 });
    for (let i = 0; i < 20; i++) {
      const d = await delay(b, 1);
      assert.ok(d >= 8_000 && d <= 12_000, `${d} ms is within 8 s to 12 s`);
    }
  });

  it('no backoff waits nothing', async () => {
    assert.equal(await delay(null, 3), 0);
  });
});
