import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { debugNode, execNode, nodeSelector, screenshot, startUi, type Ui } from './harness.js';

// Markup in names, arguments and outputs must reach the screen as text. The
// page's CSP would also block inline handlers, so the tests look at the DOM
// itself (no element was created from the text), not only at dialogs.
const IMG = '<img src=x onerror=alert(1)>';
const SCRIPT = '<script>alert("name")</script>';
const OUTPUT = '<script>alert(2)</script><img src=x onerror=alert(3)> & "quotes" \'too\'';

describe('markup from runs is shown as text', { timeout: 120_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('node names, arguments, outputs and inputs with HTML/script', async () => {
    const run = await ui.client.start({
      nodes: [execNode(IMG, 'echo', [OUTPUT]), debugNode(SCRIPT)],
      edges: [{ source: IMG, destination: SCRIPT }],
    });
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector(IMG, 'success')).waitFor();
    await page.locator(nodeSelector(SCRIPT, 'success')).waitFor();
    assert.equal(await page.locator(nodeSelector(IMG)).locator('.gnode-name').textContent(), IMG);
    assert.equal(await page.locator(nodeSelector(SCRIPT)).locator('.gnode-name').textContent(), SCRIPT);

    // The exec node's panel: name, argument and output, all as the literal text.
    await page.locator(nodeSelector(IMG)).click();
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('.attempt pre.output').waitFor();
    assert.equal(await panel.locator('.panel-title').textContent(), IMG);
    assert.equal((await panel.locator('.attempt pre.output').textContent())?.trimEnd(), OUTPUT);
    assert.equal(await panel.locator('.kv-row', { hasText: 'args' }).locator('code').textContent(), OUTPUT);
    await screenshot(page, 'run-page-markup-as-text');

    // The downstream node got that output as an input, shown as text under the upstream's name.
    await page.locator(nodeSelector(SCRIPT)).click();
    await panel.locator('.panel-title', { hasText: SCRIPT }).waitFor();
    assert.equal(await panel.locator('.input-name').textContent(), `from ${IMG}`);
    assert.equal((await panel.locator('.input pre.output').textContent())?.trimEnd(), OUTPUT);

    // Nothing in the text became an element; the only scripts are the app's own files.
    const dom = await page.evaluate(`({
      images: [...document.images].map((i) => i.getAttribute('src')),
      scripts: [...document.scripts].map((s) => s.getAttribute('src') ?? 'inline'),
      handlers: document.querySelectorAll('[onerror]').length,
    })`);
    const { images, scripts, handlers } = dom as { images: string[]; scripts: string[]; handlers: number };
    assert.ok(!images.includes('x'), `images: ${images.join(', ')}`);
    assert.equal(handlers, 0);
    assert.ok(
      scripts.every((s) => s.startsWith('/assets/')),
      `scripts: ${scripts.join(', ')}`,
    );
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test('a malformed %-escape in the address shows "not found" under the navigation', async () => {
    const w = await ui.page();
    const { page } = w;
    for (const path of ['/runs/%', '/workflows/%E0%A4%A', '/schedules/%zz']) {
      await page.goto(`${ui.base}${path}`);
      await page.getByRole('heading', { name: 'Not found' }).waitFor();
      await page.getByRole('navigation').getByRole('link', { name: 'Runs' }).waitFor();
    }
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });
});
