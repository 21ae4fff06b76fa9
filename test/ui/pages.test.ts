import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { debugNode, screenshot, startUi, type Ui, until } from './harness.js';

// 9 runs that succeed, 3 that fail and 1 still running: 13 in all.
describe('overview and runs list', { timeout: 150_000 }, () => {
  let ui: Ui;
  const ids = { success: [] as string[], fail: [] as string[], running: '' };
  before(async () => {
    ui = await startUi();
    for (let i = 0; i < 12; i++) {
      const fails = i % 4 === 1;
      const run = await ui.client.start({
        nodes: [debugNode(`step-${i}`, undefined, fails ? 'fail' : 'success')],
        edges: [],
      });
      (fails ? ids.fail : ids.success).push(run.id);
    }
    ids.running = (await ui.client.start({ nodes: [debugNode('slow', '120s')], edges: [] })).id;
    await until('12 runs completed and one running', async () => {
      const runs = (await ui.client.listRuns({ limit: 100 })).runs;
      return (
        runs.filter((r) => r.status === 'COMPLETED').length === 12 &&
        runs.some((r) => r.id === ids.running && r.status === 'RUNNING')
      );
    });
  });
  after(async () => {
    await ui?.client.cancel(ids.running).catch(() => {});
    await ui?.close();
  });

  test('overview: stats, agents, recent runs', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/`);
    const stat = (label: string) => page.locator('.stat-card', { hasText: label }).locator('.stat-value');
    await stat('Runs').getByText('13', { exact: true }).waitFor();
    await stat('Running nodes').getByText('1', { exact: true }).waitFor();
    await stat('Completed nodes').getByText('12', { exact: true }).waitFor();
    // The daemon's in-process agents (4 by default), each offering both runtimes.
    await until(
      'four agents listed',
      async () => (await page.locator('.agents-table tbody tr').count()) === 4,
    );
    for (const row of await page.locator('.agents-table tbody tr').all())
      assert.equal(await row.locator('td').nth(2).textContent(), 'exec, debug');
    // Recent runs: the newest ten, newest first, the running one on top.
    const rows = page.locator('.runs-table tbody tr');
    await until('ten recent runs', async () => (await rows.count()) === 10);
    assert.equal(await rows.first().getAttribute('data-run-id'), ids.running);
    assert.equal(await rows.first().locator('.badge').textContent(), 'running');
    await screenshot(page, 'overview');
    // A row links to its run.
    await rows.first().getByRole('link').click();
    await page.waitForURL(`${ui.base}/runs/${ids.running}`);
    await page.locator('.run-title .badge', { hasText: 'running' }).waitFor();
    // A run that does not exist says so (deep link, served by adagiod as the app).
    await page.goto(`${ui.base}/runs/01NOSUCHRUN0000000000000000`);
    await page.getByRole('heading', { name: 'Run not found' }).waitFor();
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test('runs list: paging and status filter', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs`);
    await page.locator('select[name="limit"]').selectOption('10');
    const all = [ids.running, ...[...ids.success, ...ids.fail].sort().reverse()];
    // Page 1: the ten newest; page 2: the other three; and back.
    await expectRows(page, all.slice(0, 10));
    assert.equal(await page.getByRole('button', { name: '← Newer' }).isDisabled(), true);
    await page.getByRole('button', { name: 'Older →' }).click();
    await expectRows(page, all.slice(10));
    await page.getByText('page 2').waitFor();
    await page.getByRole('button', { name: 'Older →' }).and(page.locator(':disabled')).waitFor();
    await page.getByRole('button', { name: '← Newer' }).click();
    await expectRows(page, all.slice(0, 10));

    // Filters: each state shows exactly its runs.
    await page.locator('select[name="status"]').selectOption('fail');
    await expectRows(page, [...ids.fail].sort().reverse());
    for (const badge of await page.locator('.runs-table tbody .badge').all())
      assert.equal(await badge.textContent(), 'failed');
    await screenshot(page, 'runs-list-failed');
    // Each finished run shows how long it took and when it finished; its nodes as done/total;
    // and the name of the node that failed, a link that opens it.
    for (const row of await page.locator('.runs-table tbody tr').all()) {
      assert.match((await row.locator('[data-col="took"]').textContent()) ?? '', /^\d+(\.\d)? (ms|s)$/);
      assert.match((await row.locator('[data-col="finished"]').textContent()) ?? '', /ago|just now/);
      assert.equal(await row.locator('[data-col="nodes"]').textContent(), '1/1 done');
      assert.match((await row.locator('[data-col="failed"]').textContent()) ?? '', /^step-\d+$/);
    }
    const firstFailed = page.locator('.runs-table tbody tr').first().locator('[data-col="failed"] a');
    const failedName = (await firstFailed.textContent()) ?? '';
    await firstFailed.click();
    await page.waitForURL(/\/runs\/[0-9A-Z]+\?node=step-\d+$/);
    await page
      .getByRole('complementary', { name: 'node details' })
      .getByRole('heading', { name: failedName })
      .waitFor();
    await page.goBack();
    await page.locator('select[name="status"]').selectOption('fail');
    await expectRows(page, [...ids.fail].sort().reverse());
    await page.locator('select[name="status"]').selectOption('running');
    await expectRows(page, [ids.running]);
    const running = page.locator('.runs-table tbody tr').first();
    assert.match((await running.locator('[data-col="took"]').textContent()) ?? '', /…$/);
    assert.equal(await running.locator('[data-col="finished"]').textContent(), '–');
    assert.equal(await running.locator('[data-col="nodes"]').textContent(), '0/1 done, 1 running');
    assert.equal(await running.locator('[data-col="failed"]').textContent(), '–');
    await screenshot(page, 'runs-list-running');
    await page.locator('select[name="status"]').selectOption('success');
    await page.locator('select[name="limit"]').selectOption('25');
    await expectRows(page, [...ids.success].sort().reverse());
    // A creation window that holds none of them.
    await page.locator('select[name="status"]').selectOption('all');
    await page.locator('input[name="since"]').fill('2099-01-01T00:00');
    await page.getByText('No runs match.').waitFor();
    await page.locator('select[name="window"]').selectOption({ label: 'last hour' });
    await expectRows(page, all);
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });
});

/** Waits until the table lists exactly these run ids, in this order. */
async function expectRows(page: Page, expected: string[]): Promise<void> {
  let seen: (string | null)[] = [];
  try {
    await until(`runs ${expected.join(', ')}`, async () => {
      seen = await page
        .locator('.runs-table tbody tr')
        .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run-id')));
      return seen.join() === expected.join();
    });
  } catch (e) {
    throw new Error(`${(e as Error).message}\nshown: ${seen.join(', ')}`);
  }
}
