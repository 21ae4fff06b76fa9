/**
 * A batch's array parameters (arrays.ts): what the server reads back from
 * pgArray's literal is what was sent, for every element type the batches
 * send, awkward strings included.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pgArray } from '../../src/backends/postgres/arrays.js';
import { POSTGRES_URL, requirePostgres } from '../support/postgres.js';

describe('PostgreSQL array literals for batch parameters', () => {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  before(async () => {
    await requirePostgres();
    await client.connect();
  });
  after(() => client.end());

  const back = async <T>(type: string, literal: string): Promise<T[]> =>
    (await client.query<{ a: T[] }>(`SELECT $1::${type} AS a`, [literal])).rows[0]!.a;

  it('text: quotes, backslashes, separators, braces, blanks, the word NULL, unicode and null', async () => {
    const values = [
      'plain',
      'a"b',
      'c\\d',
      '\\"',
      'x,y',
      '{z}',
      ' padded ',
      '',
      'NULL',
      'null',
      'ünï ✓',
      null,
    ];
    assert.deepEqual(await back<string | null>('text[]', pgArray(values)), values);
  });

  it('jsonb: JSON text with quotes and escapes', async () => {
    const docs = [{}, { a: ['x"y', 'back\\slash'] }, { 'adagio.arguments.exec.command': ['echo "hi"'] }];
    const got = await back<unknown>('jsonb[]', pgArray(docs.map((d) => JSON.stringify(d))));
    assert.deepEqual(got, docs);
  });

  it('bytea: empty and binary buffers', async () => {
    const bufs = [Buffer.alloc(0), Buffer.from([0, 1, 0x22, 0x5c, 0xff]), Buffer.from('output\n')];
    const got = await back<Buffer>('bytea[]', pgArray(bufs));
    assert.deepEqual(
      got.map((b) => b.toString('hex')),
      bufs.map((b) => b.toString('hex')),
    );
  });

  it('bigint: numbers and nulls; a number that is not finite is refused', async () => {
    const got = await back<string | null>('bigint[]', pgArray([1_764_400_000_000, 0, -5, null]));
    assert.deepEqual(got, ['1764400000000', '0', '-5', null]);
    assert.throws(() => pgArray([Number.NaN]), TypeError);
  });

  it('an empty array', async () => {
    assert.deepEqual(await back<string>('text[]', pgArray([])), []);
  });
});
