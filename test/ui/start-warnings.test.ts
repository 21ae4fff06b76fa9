/**
 * What the UI says about a start and an attempt: the Start response's
 * warning about a runtime no agent serves, and an exec attempt's exit code
 * as a label rather than a raw metadata key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { execNode, graphJson, screenshot, startUi, type Ui } from './harness.js';

describe('start warnings and exit codes', { timeout: 120_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('a run started from the UI with an unserved runtime shows the warning on its page', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/start`);
    await page.getByLabel('graph JSON').fill(
      graphJson({
        nodes: [{ name: 'lonely', runtime: 'nobody-serves-this', metadata: {}, retry: {} }],
        edges: [],
      }),
    );
    await page.getByRole('button', { name: 'Start run' }).click();
    await page.waitForURL(/\/runs\/[0-9A-Z]+$/);
    const alert = page.getByRole('alert', { name: 'start warnings' });
    await alert.getByText('no live agent serves runtime "nobody-serves-this" (needed by lonely)').waitFor();
    await screenshot(page, 'start-warning');
    await alert.getByRole('button', { name: 'dismiss warnings' }).click();
    await alert.waitFor({ state: 'detached' });
    const runId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await ui.client.cancel(runId);
    assert.deepEqual(w.errors, []);
  });

  test("an exec attempt's exit code is labelled, not shown as its metadata key", async () => {
    const run = await ui.client.start({
      nodes: [execNode('quits', 'sh', ['-c', 'echo bye; exit 3'])],
      edges: [],
    });
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?node=quits`);
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('[data-exit-code]', { hasText: 'exit code 3' }).waitFor();
    assert.equal(await panel.getByText('adagio.exec.exit_code').count(), 0);
    await screenshot(page, 'failed-node-exit-code');
    assert.deepEqual(w.errors, []);
  });
});
