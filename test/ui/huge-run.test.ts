/**
 * A 10,000-node run is usable: it paints (the quick layout, at once), only
 * what is on screen is rendered, the search box finds and opens a node far
 * away, and the page keeps answering. Its nodes wait for a runtime no agent
 * serves, so the test measures the page, not the agents.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { GraphSpec } from '../../src/model/types.js';
import { nodeSelector, screenshot, startUi, type Ui } from './harness.js';

const LAYERS = 250;
const WIDTH = 40;
const name = (layer: number, row: number) => `n${layer}-${row}`;

function hugeGraph(): GraphSpec {
  const spec: GraphSpec = { nodes: [], edges: [] };
  for (let l = 0; l < LAYERS; l++)
    for (let r = 0; r < WIDTH; r++) {
      spec.nodes.push({ name: name(l, r), runtime: 'nobody-serves-this', metadata: {}, retry: {} });
      if (l > 0) spec.edges.push({ source: name(l - 1, r), destination: name(l, r) });
    }
  return spec;
}

const RECORD_LONG_TASKS = `
  window.__longTasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longTasks.push(Math.round(e.duration));
  }).observe({ type: 'longtask', buffered: true });
`;

describe('a 10,000-node run', { timeout: 300_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('paints, renders only what is on screen, and finds a node far away', async () => {
    const w = await ui.page();
    const { page } = w;
    await page.addInitScript({ content: RECORD_LONG_TASKS });
    const run = await ui.client.start(hugeGraph());
    const t0 = Date.now();
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector('n0-0')).waitFor({ timeout: 120_000 });
    const firstPaintMs = Date.now() - t0;
    assert.equal(await page.locator('.run-graph').getAttribute('data-layout'), 'quick');
    const rendered = await page.locator('.react-flow__node').count();
    assert.ok(rendered > 0 && rendered < 1000, `${rendered} nodes rendered`);

    const search = page.getByRole('search', { name: 'find a node' }).getByLabel('node name');
    await search.fill('n249-39');
    await search.press('Enter');
    const title = page.getByRole('complementary', { name: 'node details' }).locator('.panel-title');
    await title.getByText('n249-39', { exact: true }).waitFor({ timeout: 60_000 });
    await page.locator(nodeSelector('n249-39')).waitFor({ timeout: 60_000 });
    await screenshot(page, 'run-page-10000-nodes');

    // Zoomed all the way out the page still answers: the zoom stops where the nodes on screen stay some hundreds.
    const t1 = Date.now();
    await page.locator('.react-flow__controls-fitview').click();
    await page.evaluate('new Promise((r) => requestAnimationFrame(() => r(true)))');
    const zoomOutMs = Date.now() - t1;
    const renderedOut = await page.locator('.react-flow__node').count();
    console.log(`10000-node run zoomed out: ${renderedOut} nodes rendered, next frame after ${zoomOutMs} ms`);
    assert.ok(renderedOut < 1000, `${renderedOut} nodes rendered zoomed out`);
    const longTasks = (await page.evaluate('window.__longTasks')) as number[];
    console.log(
      `10000-node run: first paint ${firstPaintMs} ms, ${rendered} nodes rendered; ${longTasks.length} long tasks, longest ${Math.max(0, ...longTasks)} ms`,
    );
    await ui.client.cancel(run.id);
    assert.deepEqual(w.errors, []);
  });

  test('a 2,000-node tree opens on its root, not on empty canvas', async () => {
    // Each node fans out to three: the quick layout centres every column on the tallest (the
    // leaves), so the root sits some thousands of pixels below the graph's top-left corner.
    const node = (i: number) => `t${String(i).padStart(4, '0')}`;
    const spec: GraphSpec = { nodes: [], edges: [] };
    for (let i = 0; i < 2000; i++) {
      spec.nodes.push({ name: node(i), runtime: 'nobody-serves-this', metadata: {}, retry: {} });
      if (i > 0) spec.edges.push({ source: node(Math.floor((i - 1) / 3)), destination: node(i) });
    }
    const run = await ui.client.start(spec);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator('.run-graph[data-layout="quick"]').waitFor({ timeout: 120_000 });
    // The root is rendered and inside the visible canvas, without searching for it.
    const root = page.locator(nodeSelector(node(0)));
    await root.waitFor({ timeout: 60_000 });
    const canvas = await page.locator('.graph-canvas').boundingBox();
    const box = await root.boundingBox();
    assert.ok(canvas && box, 'the canvas and the root have boxes');
    assert.ok(
      box.x >= canvas.x &&
        box.y >= canvas.y &&
        box.x + box.width <= canvas.x + canvas.width &&
        box.y + box.height <= canvas.y + canvas.height,
      `root at ${JSON.stringify(box)} inside the canvas ${JSON.stringify(canvas)}`,
    );
    // And its children around it.
    await page.locator(nodeSelector(node(1))).waitFor();
    await ui.client.cancel(run.id);
    assert.deepEqual(w.errors, []);
  });
});
