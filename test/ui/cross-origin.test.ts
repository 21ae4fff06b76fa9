/**
 * A web page from another site cannot start anything on a default (token-less)
 * adagiod, in a real Chromium (issue 17, docs/security.md). The page tries what
 * browsers send without a CORS preflight: `fetch` with `no-cors` and a
 * `text/plain` JSON body, and an HTML form posting a JSON-shaped text/plain
 * body; and a DNS-rebinding page, whose own origin's name resolves to the
 * daemon, sends a same-origin JSON request. Each run would `touch` a marker
 * file: it must never appear, and the daemon must have answered each attempt
 * with a refusal (so the requests did reach it).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Response } from 'playwright-core';
import { AdagioClient } from '../../src/client/index.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { CHROMIUM_ARGS, WAIT_MS } from './harness.js';

describe('cross-origin pages cannot start runs (Chromium)', () => {
  let daemon: RunningDaemon;
  let browser: Browser;
  let attacker: Server;
  let attackerOrigin: string;
  let dir: string;
  let marker: string;
  let spec: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'adagio-xorigin-'));
    marker = join(dir, 'pwned');
    spec = JSON.stringify({
      nodes: [
        {
          name: 'pwn',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': { values: ['touch'] },
            'adagio.arguments.exec.args': { values: [marker] },
          },
        },
      ],
    });
    daemon = await startDaemon(['--backend-type', 'memory', '--grace-period', '1s']);
    attacker = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(attackPage(daemon.address, spec));
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
    // `localhost` and not 127.0.0.1: another origin than the daemon's on every count (host and port).
    attackerOrigin = `http://localhost:${(attacker.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [...CHROMIUM_ARGS, '--host-resolver-rules=MAP rebind.test 127.0.0.1'],
      timeout: WAIT_MS * 2,
    });
  });
  after(async () => {
    await browser?.close().catch(() => {});
    await daemon?.stop();
    await new Promise((r) => attacker?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  /** Waits a little for any run the attempts might have started, then checks none did. */
  const assertNothingRan = async () => {
    await new Promise((r) => setTimeout(r, 1500));
    const runs = await new AdagioClient({ address: daemon.address }).listRuns();
    assert.equal(runs.runs.length, 0, 'no run was started');
    assert.equal(existsSync(marker), false, 'no command ran');
  };

  it('fetch with no-cors and text/plain, and a form post, from another origin: refused, nothing runs', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const refusals: string[] = [];
    page.on('response', (r: Response) => {
      if (r.url().startsWith(daemon.address))
        refusals.push(`${r.request().method()} ${new URL(r.url()).pathname} ${r.status()}`);
    });
    await page.goto(`${attackerOrigin}/`);
    await page.waitForFunction(
      () => (globalThis as unknown as { attackDone?: boolean }).attackDone === true,
      null,
      {
        timeout: WAIT_MS,
      },
    );
    await page
      .waitForEvent('response', {
        predicate: (r) => r.request().resourceType() === 'document' && r.url().startsWith(daemon.address),
        timeout: WAIT_MS,
      })
      .catch(() => {});
    await assertNothingRan();
    assert.ok(refusals.includes('POST /v0/runs 415'), refusals.join('; '));
    assert.ok(refusals.includes('POST /adagio.rpc.controlplane.ControlPlane/Start 415'), refusals.join('; '));
    assert.ok(
      refusals.filter((r) => r === 'POST /v0/runs 415').length >= 2,
      `the fetch and the form: ${refusals.join('; ')}`,
    );
    await context.close();
  });

  it('a DNS-rebinding page (its name resolves to the daemon) is refused by the Host check', async () => {
    const port = new URL(daemon.address).port;
    const origin = `http://rebind.test:${port}`;
    const context = await browser.newContext();
    const page = await context.newPage();
    // The rebinding page already runs under this origin; the name now resolves to 127.0.0.1, so the
    // document itself comes from the daemon (refused too), and the page's scripts act from that origin.
    const doc = await page.goto(`${origin}/`);
    assert.equal(doc?.status(), 421);
    const statuses = await page.evaluate(
      async (body) => {
        const put = await fetch('/v0/runs', {
          method: 'PUT',
          headers: { 'Content-Type': 'application/json' },
          body,
        });
        const list = await fetch('/v0/runs');
        return [put.status, list.status];
      },
      JSON.stringify({ spec: JSON.parse(spec) }),
    );
    assert.deepEqual(statuses, [421, 421]);
    await assertNothingRan();
    await context.close();
  });
});

/** The attacker's page: a no-cors fetch to the JSON route and to Connect, then a text/plain form post. */
function attackPage(daemon: string, spec: string): string {
  const body = JSON.stringify({ spec: JSON.parse(spec) });
  // A text/plain form sends `name=value`: a name ending in `"pad":"` and a value `"}` make the body JSON.
  const formName = `${body.slice(0, -1)},"pad":"`;
  const attr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
  return `<!doctype html>
<iframe name="sink"></iframe>
<form id="f" method="POST" enctype="text/plain" action="${daemon}/v0/runs" target="sink">
  <input name="${attr(formName)}" value="&quot;}">
</form>
<script>
  (async () => {
    const body = ${JSON.stringify(body)};
    for (const url of ['${daemon}/v0/runs', '${daemon}/adagio.rpc.controlplane.ControlPlane/Start']) {
      try {
        await fetch(url, { method: 'POST', mode: 'no-cors', headers: { 'Content-Type': 'text/plain' }, body: url.endsWith('Start') ? ${JSON.stringify(spec)} : body });
      } catch (e) {}
    }
    document.getElementById('f').submit();
    window.attackDone = true;
  })();
</script>`;
}
