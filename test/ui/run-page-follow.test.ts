/**
 * A finished run's page keeps up with what happens to the run elsewhere: a
 * retry made through the API (the CLI, another tab) shows on the open page,
 * and the page's own Retry on a run that is already running again follows it
 * instead of contradicting the header. Also: graph nodes open from the
 * keyboard and are named by their state, and a Rerun keeps the start warnings.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { debugNode, execNode, nodeSelector, startUi, type Ui, until } from './harness.js';

describe('run page: following a finished run', { timeout: 240_000 }, () => {
  let ui: Ui;
  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'adagio-ui-follow-'));
    ui = await startUi();
  });
  after(async () => {
    await ui?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const completed = async (id: string) => {
    for (;;) {
      const run = await ui.client.inspect(id);
      if (run.status === 'COMPLETED') return run;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  /** An exec node that fails until `flag` exists, then runs `then` (a shell command). */
  const flagged = (name: string, flag: string, then: string) =>
    execNode(name, 'sh', ['-c', `if test -f '${flag}'; then ${then}; else exit 1; fi`]);

  // First: other tests leave their pages open, and each checks its own finished run.
  test("after one Inspect, a finished run's page reads only the run's summary, and still sees a retry", async () => {
    const flag = join(dir, 'summary');
    const run = await ui.client.start({ nodes: [flagged('once', flag, 'echo ok')], edges: [] });
    assert.equal((await completed(run.id)).conclusion, 'FAIL');
    /** Requests of an RPC method the daemon answered so far. */
    const served = async (method: string) => {
      const text = await (await fetch(`${ui.base}/metrics`)).text();
      let n = 0;
      for (const m of text.matchAll(
        new RegExp(
          `adagio_api_request_duration_seconds_count\\{route="${method}",code="[a-z_]+"\\} (\\d+)`,
          'g',
        ),
      ))
        n += Number(m[1]);
      return n;
    };
    const inspects = await served('Inspect');
    const lists = await served('ListRuns');
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector('once', 'fail')).waitFor();
    // Three checks (5 s apart): the first inspects, the others list.
    await until('two summaries read', async () => (await served('ListRuns')) - lists >= 2, 30_000);
    assert.equal((await served('Inspect')) - inspects, 1, 'one Inspect, then summaries');
    writeFileSync(flag, '');
    await ui.client.retry(run.id);
    assert.equal((await completed(run.id)).conclusion, 'SUCCESS');
    await page.locator(nodeSelector('once', 'success')).waitFor();
    await w.context.close();
  });

  test('a retry made elsewhere shows on the open page of the failed run', async () => {
    const flag = join(dir, 'external');
    const run = await ui.client.start({
      nodes: [flagged('flaky', flag, 'echo ok'), debugNode('after')],
      edges: [{ source: 'flaky', destination: 'after' }],
    });
    assert.equal((await completed(run.id)).conclusion, 'FAIL');
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector('flaky', 'fail')).waitFor();
    await page.getByRole('button', { name: 'Retry run' }).waitFor();

    writeFileSync(flag, '');
    await ui.client.retry(run.id);
    assert.equal((await completed(run.id)).conclusion, 'SUCCESS');
    // The page notices by itself (it checks the finished run again): no reload.
    await page.locator(nodeSelector('flaky', 'success')).waitFor();
    await page.locator(nodeSelector('after', 'success')).waitFor();
    await until(
      'the Retry button went away',
      async () => (await page.getByRole('button', { name: 'Retry run' }).count()) === 0,
    );
    assert.deepEqual(w.dialogs, []);
    assert.deepEqual(w.errors, []);
  });

  test("the page's Retry on a run already retried elsewhere follows the running run", async () => {
    const flag = join(dir, 'conflict');
    const run = await ui.client.start({ nodes: [flagged('slow', flag, 'sleep 120')], edges: [] });
    await completed(run.id);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.locator(nodeSelector('slow', 'fail')).waitFor();
    const retry = page.getByRole('button', { name: 'Retry run' });
    await retry.waitFor();

    writeFileSync(flag, '');
    await ui.client.retry(run.id);
    // The API refuses this retry (the run is open again): the page follows the run instead of
    // staying on "failed". Its periodic check may have got there first and removed the button.
    await retry.click({ timeout: 2_000 }).catch(() => {});
    await page.locator(nodeSelector('slow', 'running')).waitFor();
    await page.getByRole('button', { name: 'Cancel run' }).waitFor();
    assert.equal(await retry.count(), 0);
    await ui.client.cancel(run.id);
    await page.getByRole('button', { name: 'Rerun' }).waitFor();
    assert.deepEqual(w.dialogs, []);
  });

  test('graph nodes are named by their state and open from the keyboard', async () => {
    const run = await ui.client.start({
      nodes: [debugNode('first'), debugNode('second')],
      edges: [{ source: 'first', destination: 'second' }],
    });
    await completed(run.id);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    const first = page.getByRole('group', { name: 'first, succeeded' });
    const second = page.getByRole('group', { name: 'second, succeeded' });
    await first.waitFor();
    await second.waitFor();
    const panel = page.getByRole('complementary', { name: 'node details' });

    await first.focus();
    await page.keyboard.press('Enter');
    await panel.locator('.panel-title', { hasText: 'first' }).waitFor();
    assert.equal(new URL(page.url()).searchParams.get('node'), 'first');
    await second.focus();
    await page.keyboard.press(' ');
    await panel.locator('.panel-title', { hasText: 'second' }).waitFor();
    assert.equal(new URL(page.url()).searchParams.get('node'), 'second');
    assert.deepEqual(w.errors, []);
  });

  test('a Rerun shows the warning about a runtime no agent serves, as a start does', async () => {
    const run = await ui.client.start({
      nodes: [{ name: 'lonely', runtime: 'nobody-serves-this', metadata: {}, retry: {} }],
      edges: [],
    });
    await ui.client.cancel(run.id);
    const w = await ui.page();
    const { page } = w;
    await page.goto(`${ui.base}/runs/${run.id}`);
    await page.getByRole('button', { name: 'Rerun' }).click();
    await page.waitForURL(
      (url) => /\/runs\/[0-9A-Z]{26}$/.test(url.pathname) && !url.pathname.endsWith(run.id),
    );
    const alert = page.getByRole('alert', { name: 'start warnings' });
    await alert.getByText('no live agent serves runtime "nobody-serves-this" (needed by lonely)').waitFor();
    const rerunId = new URL(page.url()).pathname.split('/').pop()!;
    await ui.client.cancel(rerunId);
    assert.deepEqual(w.errors, []);
  });
});
