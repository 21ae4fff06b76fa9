import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chain, debugNode, graphJson, nodeSelector, startUi, type Ui } from './harness.js';

const TOKEN = 'ui-test-token-9f2c';

describe('UI with the API token on', { timeout: 120_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi(['--api-token', TOKEN], TOKEN);
  });
  after(async () => {
    await ui?.close();
  });

  test('asks for the token, works once it is set, keeps it across reloads', async () => {
    const w = await ui.page();
    const { page } = w;
    // The app itself loads without a token; its API calls are refused until one is set.
    await page.goto(`${ui.base}/`);
    await page.locator('.error-box', { hasText: 'The API needs a token' }).first().waitFor();

    // A wrong token is still refused.
    await page.getByRole('button', { name: 'API token' }).click();
    await page.getByLabel('API token').fill('wrong');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('button', { name: 'API token ✓' }).waitFor();
    await page.locator('.error-box', { hasText: 'The API needs a token' }).first().waitFor();

    // The right one: stats and agents appear without a reload.
    await page.getByRole('button', { name: 'API token ✓' }).click();
    await page.getByLabel('API token').fill(TOKEN);
    await page.getByRole('button', { name: 'Save' }).click();
    await page
      .locator('.stat-card', { hasText: 'Runs' })
      .locator('.stat-value', { hasText: /^\d+$/ })
      .waitFor();
    await page.locator('.agents-table tbody tr').first().waitFor();
    assert.equal(await page.locator('.error-box').count(), 0);

    // Start a run and follow it live: Start and the Watch stream carry the token.
    await page.reload();
    await page.getByRole('link', { name: 'Start a run' }).first().click();
    // This time the graph comes as an uploaded file.
    await page.locator('input[type="file"]').setInputFiles({
      name: 'graph.json',
      mimeType: 'application/json',
      buffer: Buffer.from(graphJson(chain(debugNode('one', '300ms'), debugNode('two')))),
    });
    await page.getByText('Valid graph: 2 nodes, 1 edges.').waitFor();
    await page.getByRole('button', { name: 'Start run' }).click();
    await page.waitForURL(/\/runs\/[0-9A-Z]+$/);
    await page.locator(nodeSelector('two', 'success')).waitFor();
    const runId = new URL(page.url()).pathname.split('/').pop()!;
    assert.equal((await ui.client.inspect(runId)).conclusion, 'SUCCESS');

    // Forgetting the token locks the API again.
    await page.getByRole('button', { name: 'API token ✓' }).click();
    await page.getByRole('button', { name: 'Forget' }).click();
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('.error-box', { hasText: 'The API needs a token' }).first().waitFor();
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });
});
