/**
 * claim-next under many callers: they share one subscription per runtime set
 * in the API process, and every READY node is claimed exactly once.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { UnavailableError } from '../../src/protocol/errors.js';
import type { Repository } from '../../src/protocol/repository.js';

describe('claim-next with many callers', () => {
  const memory = new MemoryRepository({ leaseCheckIntervalMs: 50 });
  let subscriptions = 0;
  // The real store, with its subscribe calls counted.
  const counted = new Proxy(memory, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      if (prop === 'subscribe')
        return (...args: Parameters<Repository['subscribe']>) => {
          subscriptions++;
          return target.subscribe(...args);
        };
      return value.bind(target);
    },
  });
  let server: ApiServer;
  let url: string;
  before(async () => {
    server = new ApiServer({ repository: counted, ui: false });
    url = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close(100);
    await memory.close();
  });

  const post = async (method: string, body: unknown) => {
    const res = await fetch(`${url}/v0/agent/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field below.
    return { status: res.status, body: (await res.json()) as any };
  };

  it('20 callers drain 200 nodes: each claimed once, over one shared subscription', async () => {
    const reg = await post('register', { runtimes: [{ name: 'many' }], ttl_ms: 30_000 });
    const lease = reg.body.lease.id as string;
    const nodes = Array.from({ length: 200 }, (_, i) => ({
      name: `n${i}`,
      runtime: 'many',
      metadata: {},
      retry: {},
    }));
    // Half the nodes READY before the callers come, half while they wait.
    const first = await memory.start({ nodes: nodes.slice(0, 100), edges: [] });
    const claimed: string[] = [];
    const callers = Array.from({ length: 20 }, async (_, i) => {
      const agent = `caller-${i}`;
      await post('register', { agent_id: agent, runtimes: [{ name: 'many' }], lease_id: lease });
      for (;;) {
        const c = await post('claim-next', {
          lease_id: lease,
          agent_id: agent,
          runtimes: ['many'],
          wait_ms: 500,
        });
        assert.equal(c.status, 200, JSON.stringify(c.body));
        if (!c.body.claimed) return;
        claimed.push(`${c.body.claimed.runId}/${c.body.claimed.node.spec.name}`);
        const f = await post('finish', {
          run_id: c.body.claimed.runId,
          node_name: c.body.claimed.node.spec.name,
          claim_id: c.body.claimed.claimId,
          conclusion: 'SUCCESS',
        });
        assert.equal(f.status, 200, JSON.stringify(f.body));
      }
    });
    await new Promise((r) => setTimeout(r, 100));
    const second = await memory.start({ nodes: nodes.slice(100), edges: [] });
    await Promise.all(callers);
    assert.equal(claimed.length, 200, 'every node claimed');
    assert.equal(new Set(claimed).size, 200, 'no node claimed twice');
    for (const run of [first, second]) assert.equal((await memory.inspect(run.id)).conclusion, 'SUCCESS');
    assert.equal(subscriptions, 1, 'the callers shared one subscription');
  });
});

describe('claim-next whose caller hangs up while a claim is in flight', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** A memory store whose claims of the named nodes are slow (a loaded store), and whose next release may fail once. */
  function slowStore(slow: string[]) {
    const store = new MemoryRepository();
    let claimStarted!: () => void;
    const control = {
      failRelease: false,
      releases: 0,
      /** Slow claims on their way so far. */
      slowClaims: 0,
      /** Resolves once a slow claim is on its way. */
      claiming: new Promise<void>((r) => {
        claimStarted = r;
      }),
    };
    const repo = new Proxy(store, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop === 'claim')
          return async (req: Parameters<Repository['claim']>[0]) => {
            if (slow.includes(req.node)) {
              control.slowClaims++;
              claimStarted();
              await sleep(500);
            }
            return target.claim(req);
          };
        if (prop === 'release')
          return async (claims: Parameters<Repository['release']>[0]) => {
            control.releases++;
            if (control.failRelease) {
              control.failRelease = false;
              throw new UnavailableError('store briefly unreachable');
            }
            return target.release(claims);
          };
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    return { store, repo, control };
  }

  async function serve(repo: Repository) {
    const server = new ApiServer({ repository: repo, ui: false });
    const url = await server.listen('127.0.0.1', 0);
    const post = async (method: string, body: unknown, signal?: AbortSignal) => {
      const res = await fetch(`${url}/v0/agent/${method}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal,
      });
      // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field below.
      return (await res.json()) as any;
    };
    return { server, post };
  }
  const spec = (names: string[]) => ({
    nodes: names.map((name) => ({ name, runtime: 'x', metadata: {}, retry: {} })),
    edges: [],
  });

  /** An agent registers and asks claim-next, then hangs up once a slow claim for it is on its way; `meanwhile` runs then. */
  async function hangUp(
    post: Awaited<ReturnType<typeof serve>>['post'],
    control: { claiming: Promise<void> },
    meanwhile: () => Promise<void> = async () => {},
  ): Promise<void> {
    const reg = await post('register', { runtimes: [{ name: 'x' }], ttl_ms: 60_000 });
    const ac = new AbortController();
    const asking = post(
      'claim-next',
      { lease_id: reg.lease.id, agent_id: reg.agent.id, runtimes: ['x'], wait_ms: 5_000 },
      ac.signal,
    ).catch(() => undefined);
    await control.claiming;
    ac.abort();
    await meanwhile();
    await asking;
  }

  it('claims nothing more for it: a node it was never offered gets no attempt', async () => {
    const { store, repo, control } = slowStore(['a']);
    const { server, post } = await serve(repo);
    try {
      const other = await store.grantLease(60_000);
      const run = await store.start(spec(['a', 'b']));
      // The caller gives up while its claim of a is in flight, and a goes elsewhere.
      await hangUp(post, control, async () => {
        await store.claim({ runId: run.id, node: 'a', leaseId: other.id, agentId: 'other' });
      });
      await sleep(1_000);
      const b = (await store.inspect(run.id)).nodes.find((n) => n.spec.name === 'b')!;
      assert.equal(b.status, 'READY', 'b was not claimed for a caller that had gone');
      assert.equal(b.attempts.length, 0);
    } finally {
      await server.close(100);
      await store.close();
    }
  });

  it('gives back a claim it made for it, READY again with no attempt, through a store outage', async () => {
    const { store, repo, control } = slowStore(['c']);
    const { server, post } = await serve(repo);
    try {
      const run = await store.start(spec(['c']));
      control.failRelease = true;
      await hangUp(post, control); // gone before the claim of c comes back
      // The claim comes back after the caller left, and its release fails once before it goes through.
      const deadline = Date.now() + 10_000;
      while (control.releases < 2 && Date.now() < deadline) await sleep(50);
      await sleep(100);
      const c = (await store.inspect(run.id)).nodes[0]!;
      assert.equal(c.status, 'READY', 'given back, not left RUNNING under the live lease');
      assert.equal(c.attempts.length, 0, 'no ERROR attempt: no work ran');
      assert.ok(
        control.releases >= 2,
        `the release was repeated after the outage (${control.releases} releases)`,
      );
    } finally {
      await server.close(100);
      await store.close();
    }
  });

  it('claim (one named node) settles a claim its caller hung up on the same way', async () => {
    const { store, repo, control } = slowStore(['d', 'e']);
    const { server, post } = await serve(repo);
    try {
      const run = await store.start(spec(['d', 'e']));
      const reg = await post('register', { runtimes: [{ name: 'x' }], ttl_ms: 60_000 });
      const ask = async (node: string) => {
        const before = control.slowClaims;
        const ac = new AbortController();
        const asking = post(
          'claim',
          { run_id: run.id, node_name: node, lease_id: reg.lease.id, agent_id: reg.agent.id },
          ac.signal,
        ).catch(() => undefined);
        while (control.slowClaims === before) await sleep(10);
        ac.abort();
        await asking;
      };
      // A plain claim: given back, READY with no attempt (it was RUNNING under the live lease for good).
      await ask('d');
      const deadline = Date.now() + 10_000;
      const node = async (name: string) =>
        (await store.inspect(run.id)).nodes.find((n) => n.spec.name === name)!;
      while ((await node('d')).status !== 'READY' && Date.now() < deadline) await sleep(50);
      assert.equal((await node('d')).status, 'READY', 'given back, not held under the live lease');
      assert.equal((await node('d')).attempts.length, 0);

      // An orphan's recovery claim: the lapsed attempt is recorded as its ERROR (rule 3), not dropped.
      const dying = await store.grantLease(60_000);
      await store.claim({ runId: run.id, node: 'e', leaseId: dying.id, agentId: 'dying' });
      await store.revokeLease(dying.id);
      await ask('e');
      while ((await node('e')).attempts.length === 0 && Date.now() < deadline) await sleep(50);
      const e = await node('e');
      assert.deepEqual(
        e.attempts.map((a) => a.conclusion),
        ['ERROR'],
        'the lapsed attempt recorded, not given back',
      );
      assert.equal(e.status, 'COMPLETED', 'no retries: the ERROR concludes it');
    } finally {
      await server.close(100);
      await store.close();
    }
  });
});
