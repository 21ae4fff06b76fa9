/**
 * The run page's timeline: a bar per attempt (retries included), coloured by
 * how each ended, and the running attempt's bar growing live; durations on
 * the graph's nodes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { debugNode, execNode, nodeSelector, screenshot, startUi, type Ui, until } from './harness.js';

describe('timeline', { timeout: 120_000 }, () => {
  let ui: Ui;
  before(async () => {
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
  });

  test('shows every attempt of a retried node, and the running one growing', async () => {
    const flaky = debugNode('flaky', '200ms', 'fail');
    flaky.retry = { fail: { maxAttempts: 3 } };
    const run = await ui.client.start({
      nodes: [flaky, debugNode('quick', '100ms'), execNode('slow', 'sleep', ['120'])],
      edges: [],
    });
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}?view=split`);
    const timeline = page.getByRole('region', { name: 'timeline' });
    const row = (name: string) => timeline.locator(`[data-timeline-row="${name}"]`);

    // Three failed attempts of the retried node, numbered in order.
    await row('flaky').locator('.tl-bar[data-attempt="3"][data-look="fail"]').waitFor();
    assert.deepEqual(
      await row('flaky')
        .locator('.tl-bar')
        .evaluateAll((bars) => bars.map((b) => b.getAttribute('data-look'))),
      ['fail', 'fail', 'fail'],
    );
    await row('quick').locator('.tl-bar[data-attempt="1"][data-look="success"]').waitFor();

    // The running attempt's bar follows the clock, without a reload: it ends at the
    // timeline's right edge (now), and its label counts up.
    const running = row('slow').locator('.tl-bar[data-running]');
    await running.waitFor();
    const first = await running.getAttribute('title');
    assert.match(first ?? '', /^slow #1: running for /);
    await until('the running bar to move on', async () => (await running.getAttribute('title')) !== first);
    const bar = await running.boundingBox();
    const track = await row('slow').locator('.tl-track').boundingBox();
    assert.ok(
      bar && track && Math.abs(bar.x + bar.width - (track.x + track.width)) < 3,
      'running bar ends at now',
    );

    // The graph's nodes say how long they took (or run so far).
    await page.locator(`${nodeSelector('quick', 'success')} [data-duration]`).waitFor();
    assert.match(
      (await page.locator(`${nodeSelector('quick')} [data-duration]`).textContent()) ?? '',
      /\d+(\.\d)? (ms|s)/,
    );
    await page.locator(`${nodeSelector('slow', 'running')} [data-duration]`).waitFor();

    // A status count picks its nodes: the others are dimmed until it is clicked again.
    const failedCount = page.locator('.run-head button.count', { hasText: '1 failed' });
    await failedCount.click();
    await page.locator(`${nodeSelector('quick')}.dimmed`).waitFor();
    assert.equal(await page.locator(`${nodeSelector('flaky')}.dimmed`).count(), 0);
    assert.equal(await page.locator(`${nodeSelector('slow')}.dimmed`).count(), 1);
    await failedCount.click();
    await page.locator(`${nodeSelector('quick')}.dimmed`).waitFor({ state: 'detached' });

    // A name in the timeline opens that node's panel.
    await row('flaky').getByRole('button', { name: 'flaky' }).click();
    const panel = page.getByRole('complementary', { name: 'node details' });
    await panel.locator('[data-total]', { hasText: '3 attempts' }).waitFor();
    await screenshot(page, 'timeline-retries');

    await page.getByRole('tab', { name: 'Timeline' }).click();
    await until('the graph to leave', async () => (await page.locator('.react-flow').count()) === 0);
    assert.match(page.url(), /view=timeline/);
    assert.match(page.url(), /node=flaky/);
    await ui.client.cancel(run.id);
    await row('slow').locator('.tl-bar[data-look="cancelled"]').waitFor();
    await screenshot(page, 'timeline-finished');
    assert.deepEqual(w.errors, []);
  });
});
