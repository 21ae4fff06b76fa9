import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { screenshot, startUi, type Ui, until } from './harness.js';

/**
 * The workflows page (rule 16) and run names, labels, filters and search in
 * the runs list (rule 17), in a real browser against a real adagiod.
 */
describe('workflows page and run identity in the runs list', { timeout: 150_000 }, () => {
  let ui: Ui;
  let labelled = '';
  before(async () => {
    ui = await startUi();
    await ui.client.putWorkflow('nightly', {
      description: 'Loads one day of data.',
      params: [
        { name: 'date', required: true, description: 'the day to load' },
        { name: 'conclusion', default: 'success' },
      ],
      spec: {
        nodes: [
          {
            name: 'load',
            runtime: 'debug',
            metadata: {
              'adagio.arguments.debug.conclusion': ['{{params.conclusion}}'],
              note: ['day {{params.date}}'],
            },
            retry: {},
          },
        ],
        edges: [],
      },
    });
    await ui.client.putWorkflow('nightly', {
      description: 'Loads one day of data, v2.',
      params: [
        { name: 'date', required: true, description: 'the day to load' },
        { name: 'conclusion', default: 'success' },
      ],
      spec: {
        nodes: [
          {
            name: 'load',
            runtime: 'debug',
            metadata: {
              'adagio.arguments.debug.conclusion': ['{{params.conclusion}}'],
              note: ['{{params.date}}'],
            },
            retry: {},
          },
        ],
        edges: [],
      },
    });
    labelled = (
      await ui.client.start(undefined, {
        workflow: 'nightly',
        params: { date: 'd0' },
        name: 'labelled one',
        labels: { team: 'data' },
      })
    ).id;
    await ui.client.start(
      { nodes: [{ name: 'x', runtime: 'debug', metadata: {}, retry: {} }], edges: [] },
      { name: 'plain' },
    );
  });
  after(async () => {
    await ui?.close();
  });

  test('workflows list, a workflow page with versions and params, and starting it from the form', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/workflows`);
    const row = page.locator('.workflows-table tbody tr[data-workflow="nightly"]');
    await row.waitFor();
    assert.equal(await row.locator('td').nth(1).textContent(), '2');
    assert.equal(
      await row.locator('[data-col="params"]').textContent(),
      'date (required), conclusion=success',
    );
    await row.getByRole('link').click();
    await page.waitForURL(`${ui.base}/workflows/nightly`);
    await page.getByText('Loads one day of data, v2.').waitFor();
    await page.locator('.params-table', { hasText: 'the day to load' }).waitFor();
    // An older version, picked from the list.
    await page.locator('select[name="version"]').selectOption('1');
    await page.waitForURL(`${ui.base}/workflows/nightly?version=1`);
    await page.getByText('Loads one day of data.', { exact: true }).waitFor();
    await page.locator('.start-workflow h2', { hasText: 'Start version 1' }).waitFor();
    await page.locator('select[name="version"]').selectOption('2');
    await page.locator('.start-workflow h2', { hasText: 'Start version 2 (the latest)' }).waitFor();
    await screenshot(page, 'workflow-page');

    // The start button waits for the required param.
    const startButton = page.locator('.start-workflow button[type="submit"]');
    assert.equal(await startButton.isDisabled(), true);
    await page.locator('input[name="param-date"]').fill('2026-01-31');
    await page.locator('input[name="run-name"]').fill('from the ui');
    await page.locator('input[name="labels"]').fill('team=web, env=prod');
    await startButton.click();
    await page.waitForURL(/\/runs\/[0-9A-Z]{26}$/);
    const id = page.url().split('/').pop()!;
    // The run page shows its name, workflow version, params and labels.
    const identity = page.locator('.run-identity');
    await identity.locator('.run-name', { hasText: 'from the ui' }).waitFor();
    await identity.getByRole('link', { name: 'nightly v2' }).waitFor();
    await identity.locator('.node-chip', { hasText: 'date=2026-01-31' }).waitFor();
    await identity.locator('.label-chip', { hasText: 'env=prod' }).waitFor();
    const run = await ui.client.inspect(id);
    assert.equal(run.name, 'from the ui');
    assert.equal(run.workflow, 'nightly');
    assert.equal(run.workflowVersion, 2);
    assert.deepEqual(run.params, { date: '2026-01-31', conclusion: 'success' });
    assert.deepEqual(run.labels, { team: 'web', env: 'prod' });
    assert.deepEqual(w.errors, []);
    assert.deepEqual(w.dialogs, []);
  });

  test('the form starts the version it shows, checks own params only, and keeps start warnings', async () => {
    const w = await ui.page();
    const { page } = w;
    const load = (note: string) => ({
      name: 'load',
      runtime: 'debug',
      metadata: { note: [`${note} {{params.constructor}}`] },
      retry: {},
    });
    // A required param named like an Object.prototype member.
    await ui.client.putWorkflow('racy', {
      params: [{ name: 'constructor', required: true }],
      spec: { nodes: [load('v1')], edges: [] },
    });
    await page.goto(`${ui.base}/workflows/racy`);
    await page.locator('.start-workflow h2', { hasText: 'Start version 1 (the latest)' }).waitFor();
    const startButton = page.locator('.start-workflow button[type="submit"]');
    await page.locator('.start-workflow', { hasText: 'Fill in constructor to start.' }).waitFor();
    assert.equal(await startButton.isDisabled(), true);
    assert.equal(await page.locator('input[name="param-constructor"]').inputValue(), '');

    // A newer version stored while the page shows version 1: the start is still version 1.
    await ui.client.putWorkflow('racy', {
      params: [{ name: 'constructor', required: true }],
      spec: { nodes: [load('v2')], edges: [] },
    });
    await page.locator('input[name="param-constructor"]').fill('c');
    await startButton.click();
    await page.waitForURL(/\/runs\/[0-9A-Z]{26}$/);
    const run = await ui.client.inspect(page.url().split('/').pop()!);
    assert.equal(run.workflowVersion, 1);
    assert.deepEqual(run.nodes[0]!.spec.metadata.note, ['v1 c']);

    // A workflow whose node needs a runtime no agent serves: the run page shows the API's warning.
    await ui.client.putWorkflow('unserved', {
      spec: {
        nodes: [{ name: 'lonely', runtime: 'nobody-serves-this', metadata: {}, retry: {} }],
        edges: [],
      },
    });
    await page.goto(`${ui.base}/workflows/unserved`);
    await page.locator('.start-workflow button[type="submit"]').click();
    await page.waitForURL(/\/runs\/[0-9A-Z]{26}$/);
    const alert = page.getByRole('alert', { name: 'start warnings' });
    await alert.getByText('no live agent serves runtime "nobody-serves-this" (needed by lonely)').waitFor();
    await ui.client.cancel(page.url().split('/').pop()!);
    assert.deepEqual(w.errors, []);
    assert.deepEqual(w.dialogs, []);
  });

  test('runs list shows names and labels, filters by workflow and labels, and searches', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs`);
    const rows = page.locator('.runs-table tbody tr');
    await until('runs listed', async () => (await rows.count()) >= 2);
    const labelledRow = page.locator(`tr[data-run-id="${labelled}"]`);
    assert.equal(await labelledRow.locator('[data-col="name"]').textContent(), 'labelled one (nightly)');
    assert.equal(await labelledRow.locator('[data-col="labels"]').textContent(), 'team=data');

    await page.locator('input[name="labels"]').fill('team=data');
    await until('only the labelled run', async () => {
      const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run-id')));
      return ids.length === 1 && ids[0] === labelled;
    });
    await page.locator('input[name="labels"]').fill('');
    await page.locator('input[name="search"]').fill('PLAIN');
    await until('only the plain run', async () => {
      const names = await rows.locator('[data-col="name"]').allTextContents();
      return names.length === 1 && names[0] === 'plain';
    });
    await page.locator('input[name="search"]').fill('');
    // Linked from the workflow page: the runs of that workflow.
    await page.goto(`${ui.base}/runs?workflow=nightly`);
    await until('only nightly runs', async () => {
      const names = await rows.locator('[data-col="name"]').allTextContents();
      return names.length >= 1 && names.every((n) => n.includes('nightly') || n === 'from the ui');
    });
    assert.equal(await page.locator('input[name="workflow"]').inputValue(), 'nightly');
    await screenshot(page, 'runs-filtered');
    assert.deepEqual(w.errors, []);
  });
});
