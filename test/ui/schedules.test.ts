import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { screenshot, startUi, type Ui, until } from './harness.js';

/**
 * The schedules pages (rule 18) in a real browser against a real adagiod
 * whose scheduler fires a per-second schedule: the list with next slots and
 * pause/resume, a schedule's page with next fire times, recent runs and trigger.
 */
describe('schedules pages', { timeout: 150_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
    await ui.client.putWorkflow('nightly', {
      params: [{ name: 'date', required: true }],
      spec: {
        nodes: [{ name: 'load', runtime: 'debug', metadata: { note: ['{{params.date}}'] }, retry: {} }],
        edges: [],
      },
    });
    await ui.client.putSchedule('every-second', {
      workflow: 'nightly',
      cron: '* * * * * *',
      params: { date: '{{schedule.time}}' },
      overlap: 'allow',
    });
    await ui.client.putSchedule('nightly-berlin', {
      workflow: 'nightly',
      cron: '0 2 * * *',
      timezone: 'Europe/Berlin',
      params: { date: '{{schedule.time}}' },
    });
  });
  after(async () => {
    await ui?.close();
  });

  test('the list shows each schedule and pauses and resumes it', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/schedules`);
    const row = page.locator('.schedules-table tbody tr[data-schedule="nightly-berlin"]');
    await row.waitFor();
    assert.equal(await row.locator('[data-col="state"]').textContent(), 'active');
    assert.match((await row.locator('td').nth(2).textContent()) ?? '', /0 2 \* \* \* \(Europe\/Berlin\)/);
    // The next slot is still to come: worded as such, never "0s ago".
    assert.match((await row.locator('[data-col="next"]').textContent()) ?? '', /^in \d+[smhd]$/);
    // Every column has a name, the catch-up policy's and the actions' (visually hidden) too.
    await page.getByRole('columnheader', { name: 'Catch-up' }).waitFor();
    await page.getByRole('columnheader', { name: 'Actions' }).waitFor();
    assert.equal(
      await row.locator('[data-col="catchup"]').textContent(),
      (await ui.client.getSchedule('nightly-berlin')).schedule.catchup || '–',
    );
    await row.getByRole('button', { name: 'Pause' }).click();
    await row.locator('[data-col="state"]', { hasText: 'paused' }).waitFor();
    assert.equal((await ui.client.getSchedule('nightly-berlin')).schedule.paused, true);
    await screenshot(page, 'schedules');
    await row.getByRole('button', { name: 'Resume' }).click();
    await row.locator('[data-col="state"]', { hasText: 'active' }).waitFor();
    assert.equal((await ui.client.getSchedule('nightly-berlin')).schedule.paused, false);
    assert.deepEqual(w.errors, []);
  });

  test("a schedule's page shows next fire times and recent runs, and triggers a run", async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/schedules`);
    await page.locator('.schedules-table').getByRole('link', { name: 'every-second' }).click();
    await page.waitForURL(`${ui.base}/schedules/every-second`);
    await until('ten next fire times', async () => (await page.locator('.next-slots li').count()) === 10);
    await until('recent runs listed', async () => (await page.locator('.runs-table tbody tr').count()) >= 2);
    await page.getByRole('button', { name: 'Trigger now' }).click();
    // The triggered run's own link: the recent-runs table below holds run links too, which must
    // not stand in for it while the trigger's reply is still on its way.
    const link = page.locator('a.triggered-run', { hasText: /^[0-9A-Z]{26}$/ });
    await link.waitFor();
    const id = (await link.textContent())!;
    const run = await ui.client.inspect(id);
    assert.equal(run.labels?.['adagio.trigger'], 'manual');
    assert.equal(run.labels?.['adagio.schedule'], 'every-second');
    await screenshot(page, 'schedule-page');
    await ui.client.pauseSchedule('every-second');
    assert.deepEqual(w.errors, []);
  });
});
