/** The UI's wording of times (ui/src/api/format.ts), without a browser. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatAgo, formatIn } from '../../ui/src/api/format.js';

const NOW = Date.parse('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(NOW + ms).toISOString();

test('formatIn words a time still to come', () => {
  assert.equal(formatIn(at(25_000), NOW), 'in 25s');
  assert.equal(formatIn(at(4 * 60_000 + 10_000), NOW), 'in 4m');
  assert.equal(formatIn(at(3 * 3_600_000), NOW), 'in 3h');
  assert.equal(formatIn(at(33 * 86_400_000 + 5_000), NOW), 'in 33d');
  // Due, or just past while the scheduler catches up.
  assert.equal(formatIn(at(0), NOW), 'now');
  assert.equal(formatIn(at(-3_000), NOW), 'now');
  assert.equal(formatIn('', NOW), '');
  assert.equal(formatIn('not a time', NOW), '');
});

test('formatAgo words a past time', () => {
  assert.equal(formatAgo(at(-25_000), NOW), '25s ago');
  assert.equal(formatAgo(at(-2 * 86_400_000), NOW), '2d ago');
});
