import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  chain,
  debugNode,
  graphJson,
  nodeSelector,
  screenshot,
  startUi,
  type Ui,
  until,
  WAIT_MS,
} from './harness.js';

// Records every data-look a graph node shows, in order, from inside the page:
// proves the colours changed live (no reload, no polling by the test).
// A string, not a function: tsx's keepNames would add `__name(...)` calls the page lacks.
const RECORD_LOOKS = `
  window.__looks = {};
  window.__pageId = Math.random();
  const note = (el) => {
    const name = el.getAttribute('data-node-name');
    const look = el.getAttribute('data-look');
    if (name === null || look === null) return;
    const seen = (window.__looks[name] ??= []);
    if (seen[seen.length - 1] !== look) seen.push(look);
  };
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'attributes' && r.target instanceof Element) note(r.target);
      for (const n of r.addedNodes) {
        if (!(n instanceof Element)) continue;
        if (n.matches('[data-node-name]')) note(n);
        for (const el of n.querySelectorAll('[data-node-name]')) note(el);
      }
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-look'] });
`;

describe('run page', { timeout: 180_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('starts a run from pasted JSON, shows problems inline, colours nodes live, opens a failed node', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.addInitScript({ content: RECORD_LOOKS });
    await page.goto(`${ui.base}/start`);
    const editor = page.getByLabel('graph JSON');

    // A bad graph: the problem is named under the editor and the run cannot be started.
    await editor.fill(
      JSON.stringify({
        nodes: [{ name: 'a', runtime: 'debug' }],
        edges: [{ source: 'a', destination: 'ghost' }],
      }),
    );
    const problems = page.getByRole('list', { name: 'problems' });
    await problems.getByText('unknown destination node "ghost"').waitFor();
    await screenshot(page, 'start-page-invalid-graph');
    assert.equal(await page.getByRole('button', { name: 'Start run' }).isDisabled(), true);
    await editor.fill('{"nodes": [');
    await problems.locator('li').first().waitFor();

    // A good one: three debug steps long enough to watch, and a node that fails.
    // Sleeps long enough that even a loaded machine renders each state (a missed frame would skip one).
    const spec = chain(debugNode('fetch', '1s'), debugNode('parse', '2s'), debugNode('report', '3s'));
    spec.nodes.push(debugNode('broken', '200ms', 'fail'));
    await editor.fill(graphJson(spec));
    await page.getByText('Valid graph: 4 nodes, 2 edges.').waitFor();
    assert.equal(await problems.count(), 0);
    const pageId = await page.evaluate('window.__pageId');
    assert.equal(typeof pageId, 'number');
    await page.getByRole('button', { name: 'Start run' }).click();
    await page.waitForURL(/\/runs\/[0-9A-Z]+$/);
    const runId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);

    // Each step turns green as it finishes; the page follows the Watch stream.
    await page.locator(nodeSelector('fetch', 'success')).waitFor();
    await screenshot(page, 'run-page-live'); // mid-run: some green, one running, one waiting
    for (const name of ['parse', 'report'])
      await page.locator(nodeSelector(name, 'success')).waitFor({ timeout: WAIT_MS });
    await page.locator('.run-head [data-look="fail"]').first().waitFor();
    const looks = await page.evaluate<Record<string, string[]>>('window.__looks');
    // Same document throughout: the start page navigated in-app and nothing reloaded.
    assert.equal(await page.evaluate('window.__pageId'), pageId);
    // The last step was seen waiting, then running, then green: transitions arrived live.
    const report = looks.report ?? [];
    assert.ok(
      report.includes('running'),
      `report looks: ${report.join(' → ')} (all: ${JSON.stringify(looks)})`,
    );
    assert.ok(
      report.indexOf('waiting') < report.indexOf('running') &&
        report.indexOf('running') < report.indexOf('success'),
      `report looks: ${report.join(' → ')} (all: ${JSON.stringify(looks)})`,
    );
    // The middle step ends green and never goes back. Whether its 2 s of running were painted is left to
    // the last step's check: in CI, with every suite running at once, the page once recorded this step
    // only as green (not even waiting: its first paint of the node came after the step had finished).
    const parse = looks.parse ?? [];
    const order = ['waiting', 'ready', 'running', 'success'];
    assert.equal(
      parse[parse.length - 1],
      'success',
      `parse looks: ${parse.join(' → ')} (all: ${JSON.stringify(looks)})`,
    );
    assert.ok(
      parse.every((l, i) => i === 0 || order.indexOf(parse[i - 1]!) < order.indexOf(l)),
      `parse looks: ${parse.join(' → ')} (all: ${JSON.stringify(looks)})`,
    );

    // The failed node: click it, read its attempt's output in the panel.
    await page.locator(nodeSelector('broken', 'fail')).click();
    await page.waitForURL(/\?node=broken$/);
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('.panel-title', { hasText: 'broken' }).waitFor();
    await panel.locator('.attempt .badge[data-look="fail"]').waitFor();
    const output = await panel.locator('.attempt pre.output').first().textContent();
    assert.match(output ?? '', /^debug: fail \(slept 200ms\)$/);
    // The graph re-frames beside the panel: no node hides behind it.
    await until('the graph to fit beside the node panel', async () => {
      const edge = (await panel.boundingBox())?.x ?? 0;
      const boxes = await Promise.all(
        ['fetch', 'parse', 'report', 'broken'].map((n) => page.locator(nodeSelector(n)).boundingBox()),
      );
      return boxes.every((b) => b !== null && b.x + b.width <= edge);
    });
    await panel.getByText('runtime').first().waitFor();
    assert.equal(
      await panel.locator('.kv-row', { hasText: 'conclusion' }).first().locator('code').textContent(),
      'fail',
    );

    // What the UI shows matches the API.
    const run = await ui.client.inspect(runId);
    assert.equal(run.status, 'COMPLETED');
    assert.equal(run.conclusion, 'FAIL');
    await screenshot(page, 'run-page-failed-node');
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test('cancels a running run with the cancel button', async () => {
    const run = await ui.client.start(chain(debugNode('long', '120s'), debugNode('after')));
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector('long', 'running')).waitFor();
    await page.locator(nodeSelector('after', 'waiting')).waitFor();
    await page.getByRole('button', { name: 'Cancel run' }).click();
    // Asked once more inline, never with a native dialog.
    await page.getByRole('button', { name: 'Yes, cancel run' }).click();
    await page.locator(nodeSelector('long', 'cancelled')).waitFor();
    await page.locator(nodeSelector('after', 'skipped')).waitFor();
    await page.locator('.run-title [data-look="cancelled"]').waitFor();
    // Once completed, there is nothing left to cancel.
    await page.getByRole('button', { name: 'Cancel run' }).waitFor({ state: 'detached' });
    const after = await ui.client.inspect(run.id);
    assert.equal(after.status, 'COMPLETED');
    assert.equal(after.conclusion, 'CANCELLED');
    assert.equal(after.nodes.find((n) => n.spec.name === 'long')?.attempts.at(-1)?.conclusion, 'CANCELLED');
    await screenshot(page, 'run-page-cancelled');
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test('shows the deadline, a node timeout, a delayed retry, and the run TIMED_OUT when its deadline passes', async () => {
    const flaky = {
      ...debugNode('flaky', '10ms', 'fail'),
      retry: { fail: { maxAttempts: 3, backoff: { initial: '1h', factor: 2 } } },
      timeout: '30m',
    };
    const run = await ui.client.start({
      nodes: [flaky, debugNode('long', '120s')],
      edges: [],
      // Long enough that a loaded machine still shows the page before the deadline (CI once took over 4 s).
      deadline: '15s',
    });
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?node=flaky`);
    await page.locator('.run-facts [data-deadline]').waitFor();
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('[data-next-attempt]').waitFor();
    assert.match(
      (await panel.locator('[data-next-attempt]').textContent()) ?? '',
      /^next attempt due \d{4}-/,
    );
    assert.equal(
      await panel.locator('.kv-row', { hasText: 'timeout' }).first().locator('code').textContent(),
      '30m',
    );
    await panel.getByText('backoff 1h ×2').waitFor();
    await panel.locator('[data-why]', { hasText: 'waiting out its retry delay' }).waitFor();
    await screenshot(page, 'run-page-delayed-retry');
    // The deadline passes: the run is cancelled as by Cancel and concludes TIMED_OUT.
    await page.locator('.run-title [data-look="timed-out"]').waitFor();
    await page.locator(nodeSelector('long', 'cancelled')).waitFor();
    const after = await ui.client.inspect(run.id);
    assert.equal(after.conclusion, 'TIMED_OUT');
    assert.deepEqual(w.errors, []);
  });
});
