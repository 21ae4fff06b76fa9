import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec, NodeSpec } from '../../src/model/types.js';
import { REPO_ROOT, type RunningDaemon, startDaemon } from '../support/daemon.js';

/**
 * A real adagiod (memory backend, in-process agents) and Debian's Chromium
 * driven by playwright-core, never a downloaded browser. Each test file gets
 * its own pair; pages record every dialog, uncaught error and CSP violation so
 * tests can assert that none happened.
 */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

// Generous: a loaded 2-core machine runs two browsers, two daemons and other helpers' tests.
export const WAIT_MS = 30_000;
export const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');

export interface Ui {
  daemon: RunningDaemon;
  browser: Browser;
  client: AdagioClient;
  base: string;
  /** A fresh browser context (own localStorage) with a watched page. */
  page(options?: { viewport?: { width: number; height: number } }): Promise<WatchedPage>;
  close(): Promise<void>;
}

export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Dialogs (alert/confirm/prompt) the page opened: must stay empty. */
  dialogs: string[];
  /** Uncaught exceptions, console errors, CSP violations. */
  errors: string[];
}

export async function startUi(daemonArgs: string[] = [], token?: string): Promise<Ui> {
  // A short grace period: tests leave cancelled sleepers behind, and stopping should not wait for them.
  const daemon = await startDaemon(['--backend-type', 'memory', '--grace-period', '1s', ...daemonArgs]);
  let browser: Browser;
  try {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: CHROMIUM_ARGS,
      timeout: WAIT_MS * 2,
    });
  } catch (e) {
    await daemon.stop();
    throw e;
  }
  const base = daemon.address.replace(/\/$/, '');
  const contexts: BrowserContext[] = [];
  return {
    daemon,
    browser,
    base,
    client: new AdagioClient({ address: base, ...(token ? { token } : {}) }),
    async page(options = {}) {
      const context = await browser.newContext({
        viewport: options.viewport ?? { width: 1400, height: 900 },
      });
      contexts.push(context);
      context.setDefaultTimeout(WAIT_MS);
      const page = await context.newPage();
      const watched: WatchedPage = { page, context, dialogs: [], errors: [] };
      page.on('dialog', (d) => {
        watched.dialogs.push(`${d.type()}: ${d.message()}`);
        void d.dismiss().catch(() => {});
      });
      page.on('pageerror', (e) => watched.errors.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        // Failed API calls the app handles (401 before a token is set, 404) log as console errors too.
        if (m.type() === 'error' && !/status of (401|404)/.test(m.text()))
          watched.errors.push(`console: ${m.text()}`);
      });
      return watched;
    },
    async close() {
      for (const c of contexts) await c.close().catch(() => {});
      await browser.close().catch(() => {});
      await daemon.stop();
    },
  };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** A `debug` node: sleeps `sleep` ("300ms"), then ends with `conclusion`. */
export function debugNode(name: string, sleep?: string, conclusion = 'success'): NodeSpec {
  const metadata: NodeSpec['metadata'] = { 'adagio.arguments.debug.conclusion': [conclusion] };
  if (sleep) metadata['adagio.arguments.debug.sleep'] = [sleep];
  return { name, runtime: 'debug', metadata, retry: {} };
}

/** An `exec` node running `command args…` (no shell). */
export function execNode(name: string, command: string, args: string[]): NodeSpec {
  return {
    name,
    runtime: 'exec',
    metadata: { 'adagio.arguments.exec.command': [command], 'adagio.arguments.exec.args': args },
    retry: {},
  };
}

export function chain(...nodes: NodeSpec[]): GraphSpec {
  return {
    nodes,
    edges: nodes.slice(1).map((n, i) => ({ source: nodes[i]!.name, destination: n.name })),
  };
}

/** The graph in the proto3 JSON form a user pastes into the start page. */
export function graphJson(spec: GraphSpec): string {
  return JSON.stringify(
    {
      nodes: spec.nodes.map((n) => ({
        name: n.name,
        runtime: n.runtime,
        metadata: Object.fromEntries(Object.entries(n.metadata).map(([k, v]) => [k, { values: v }])),
      })),
      edges: spec.edges,
    },
    null,
    2,
  );
}

/** A CSS attribute selector for a graph node by name (names may hold any character). */
export function nodeSelector(name: string, look?: string): string {
  const sel = `.react-flow__node [data-node-name="${cssString(name)}"]`;
  return look ? `${sel}[data-look="${look}"]` : sel;
}

function cssString(s: string): string {
  return s.replace(/["\\]/g, (c) => `\\${c}`).replace(/\n/g, '\\a ');
}

/** Polls `check` until it returns true (a condition, never a fixed sleep), failing after `timeoutMs`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
