/**
 * The node panel streams a running node's output (the Watch stream's output
 * chunks, no reload) and keeps it as the attempt's output after a cancel;
 * and says why a node waits.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { chain, execNode, nodeSelector, screenshot, startUi, type Ui } from './harness.js';

describe('live output', { timeout: 120_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('the node panel shows output while the node runs, and keeps it after cancel', async () => {
    const run = await ui.client.start(
      chain(execNode('talk', 'sh', ['-c', 'echo line 1; sleep 1; echo line 2; exec sleep 120'])),
    );
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?node=talk`);
    const panel = page.getByRole('complementary', { name: 'node details' });
    const live = panel.getByRole('region', { name: 'live output' });
    await live.locator('pre.output', { hasText: 'line 1' }).waitFor();
    // The second line arrives later, on the open page: streamed, not loaded.
    await live.locator('pre.output', { hasText: 'line 2' }).waitFor();
    assert.equal((await ui.client.inspect(run.id)).nodes[0]!.status, 'RUNNING');
    await screenshot(page, 'live-output-running');

    await ui.client.cancel(run.id);
    await page.locator(nodeSelector('talk', 'cancelled')).waitFor();
    await live.waitFor({ state: 'detached' });
    const kept = await panel.locator('.attempt pre.output').first().textContent();
    assert.equal(kept, 'line 1\nline 2\n');
    await screenshot(page, 'live-output-after-cancel');
    assert.deepEqual(w.errors, []);
  });

  test('the node panel says why a node waits: no agent for its runtime, or its upstream', async () => {
    const run = await ui.client.start({
      nodes: [
        { name: 'orphan-job', runtime: 'nobody-serves-this', metadata: {}, retry: {} },
        { name: 'after', runtime: 'debug', metadata: {}, retry: {} },
      ],
      edges: [{ source: 'orphan-job', destination: 'after' }],
    });
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?node=orphan-job`);
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel
      .locator('[data-why]', { hasText: 'waiting for an agent with runtime "nobody-serves-this"' })
      .waitFor();
    await screenshot(page, 'node-panel-why-ready');
    await page.goto(`${ui.base}/runs/${run.id}?node=after`);
    await panel.locator('[data-why]', { hasText: 'waiting for orphan-job to succeed' }).waitFor();
    await ui.client.cancel(run.id);
    assert.deepEqual(w.errors, []);
  });
});
