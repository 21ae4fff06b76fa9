/**
 * The retry and rerun buttons of a finished run's page, in headless Chromium
 * against a real adagiod: a failed run with an all_done cleanup node shows its
 * trigger in the node panel, Retry runs the failed node again in the same run
 * (the page follows it live), and Rerun opens a new run of the same graph. A
 * succeeded run offers Rerun only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { debugNode, nodeSelector, screenshot, startUi, type Ui, until } from './harness.js';

describe('run page: retry and rerun', { timeout: 180_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  const completed = async (id: string) => {
    for (;;) {
      const run = await ui.client.inspect(id);
      if (run.status === 'COMPLETED') return run;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  test('retries a failed run in place and reruns it as a new run', async () => {
    const run = await ui.client.start({
      nodes: [debugNode('bad', undefined, 'fail'), { ...debugNode('cleanup'), trigger: 'all_done' }],
      edges: [{ source: 'bad', destination: 'cleanup' }],
    });
    await completed(run.id);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?node=cleanup`);
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('.kv-row', { hasText: 'trigger' }).locator('code', { hasText: 'all_done' }).waitFor();
    await page.locator(nodeSelector('bad', 'fail')).waitFor();

    // The retried run may be open for a few milliseconds only (bad fails at once), less than
    // Playwright's polling interval: an observer installed before the click records that the
    // Retry button went away (the run reopened) rather than a poll that may miss it.
    await page.evaluate(`(() => {
      const observer = new MutationObserver(() => {
        const buttons = [...document.querySelectorAll('.run-head button')];
        if (!buttons.some((b) => b.textContent === 'Retry run')) {
          window.__retryGone = true;
          observer.disconnect();
        }
      });
      observer.observe(document.body, { subtree: true, childList: true, characterData: true });
    })()`);
    await page.getByRole('button', { name: 'Retry run' }).click();
    // The page follows the retried run: bad fails again, its second attempt recorded.
    // Polled from the test, not with waitForFunction: its in-page polling evaluates a string, which
    // the UI's Content-Security-Policy (no 'unsafe-eval') refuses whenever the first check is false.
    await until(
      'the Retry button went away',
      async () => (await page.evaluate('window.__retryGone')) === true,
    );
    await page.getByRole('button', { name: 'Retry run' }).waitFor();
    const retried = await completed(run.id);
    assert.equal(retried.nodes.find((n) => n.spec.name === 'bad')!.attempts.length, 2);
    await page.locator(`${nodeSelector('bad', 'fail')}`).waitFor();
    await screenshot(page, 'run-page-retried');

    await page.getByRole('button', { name: 'Rerun' }).click();
    await page.waitForURL(
      (url) => !url.pathname.endsWith(run.id) && /\/runs\/[0-9A-Z]{26}$/.test(url.pathname),
    );
    const newId = new URL(page.url()).pathname.split('/').at(-1)!;
    const rerun = await completed(newId);
    assert.deepEqual(
      rerun.nodes.map((n) => n.spec),
      retried.nodes.map((n) => n.spec),
      'a new run of the same graph',
    );
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test('a succeeded run offers Rerun only', async () => {
    const run = await ui.client.start({ nodes: [debugNode('fine')], edges: [] });
    await completed(run.id);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.getByRole('button', { name: 'Rerun' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Retry run' }).count(), 0);
    assert.deepEqual(w.errors, []);
  });
});
