/**
 * The runs list over etcd with 1,000 runs stored (issue 12: on etcd, listing
 * more than 32 runs at once used to fail with "too many operations in txn
 * request"). adagiod on a test etcd; 1,000 one-node runs of a runtime no agent
 * serves, so they stay put; the list pages through all of them, 100 a page.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sharedEtcd, uniqueNamespace } from '../support/etcd.js';
import { startUi, type Ui, until } from './harness.js';

const RUNS = 1000;
const PER_PAGE = 100;

describe('runs list on etcd with 1,000 runs', { timeout: 240_000 }, () => {
  let ui: Ui;
  const ids = new Set<string>();
  before(async () => {
    const etcd = await sharedEtcd();
    ui = await startUi([
      'api',
      '--backend-type',
      'etcd',
      '--etcd-addresses',
      etcd.endpoints.join(','),
      '--etcd-namespace',
      uniqueNamespace('adagio-ui'),
    ]);
    const spec = {
      nodes: [{ name: 'idle', runtime: 'nobody-serves-this', metadata: {}, retry: {} }],
      edges: [],
    };
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next++ < RUNS) ids.add((await ui.client.start(spec)).id);
      }),
    );
    assert.equal(ids.size, RUNS);
  });
  after(async () => {
    await ui?.close();
  });

  test('pages of 100 show every run once, newest first, to the last page', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs`);
    await page.locator('select[name="limit"]').selectOption(String(PER_PAGE));
    const rows = page.locator('.runs-table tbody tr');
    const seen: string[] = [];
    for (let p = 1; p <= RUNS / PER_PAGE; p++) {
      await page.getByText(`page ${p}`, { exact: true }).waitFor();
      await until(`page ${p}: ${PER_PAGE} rows, none from the page before`, async () => {
        const shown = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id') ?? ''));
        return shown.length === PER_PAGE && !shown.some((id) => seen.includes(id));
      });
      seen.push(...(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id') ?? ''))));
      if (p < RUNS / PER_PAGE) await page.getByRole('button', { name: 'Older →' }).click();
    }
    await page.getByRole('button', { name: 'Older →' }).and(page.locator(':disabled')).waitFor();
    assert.equal(seen.length, RUNS);
    assert.deepEqual(new Set(seen), ids, 'every run, each once');
    assert.deepEqual(seen, [...seen].sort().reverse(), 'newest first');
    assert.deepEqual(w.errors, []);
    assert.deepEqual(w.dialogs, []);
  });
});
