/** The agent pool's claim-ahead queue (design rule 20), on the real memory backend. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { AgentPool, type AgentPoolOptions } from '../../src/agent/index.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { InvalidArgumentError } from '../../src/protocol/errors.js';
import { completed, node, runtime, spec, testPool, until } from './helpers.js';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

/** A runtime whose attempts wait until let go, recording the nodes it ran. */
function gate() {
  const ran: string[] = [];
  let open!: () => void;
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return {
    ran,
    open: () => open(),
    runtime: runtime('gate', async (ctx) => {
      ran.push(`${ctx.runId}/${ctx.node.spec.name}`);
      await opened;
      return { conclusion: 'SUCCESS' };
    }),
  };
}

/** A runtime whose attempts each wait for their own turn: step() lets the oldest waiting one finish. */
function turnstile() {
  const ran: string[] = [];
  const waiting: (() => void)[] = [];
  return {
    ran,
    step: () => waiting.shift()?.(),
    runtime: runtime('gate', async (ctx) => {
      ran.push(`${ctx.runId}/${ctx.node.spec.name}`);
      await new Promise<void>((r) => waiting.push(r));
      return { conclusion: 'SUCCESS' };
    }),
  };
}

function setup(options: Partial<AgentPoolOptions>, g: ReturnType<typeof gate>) {
  return testPool(cleanup, { runtimes: [g.runtime], concurrency: 1, ...options });
}

const independent = (n: number) =>
  spec(Array.from({ length: n }, (_, i) => ({ name: `n${i}`, runtime: 'gate' })));

describe('agent pool: claim-ahead (rule 20)', () => {
  it('claims up to claimAhead nodes while its slots are busy, runs them as slots free up, and records when each really started', async () => {
    const g = gate();
    const { repo, pool } = setup({ concurrency: 1, claimAhead: 2 }, g);
    await pool.start();
    const run = await repo.start(independent(4));
    await until(async () => pool.counters.claimedAhead === 2, 'two nodes claimed ahead');
    const state = await repo.inspect(run.id);
    assert.equal(state.nodes.filter((n) => n.status === 'RUNNING').length, 3, 'one running, two queued');
    assert.equal(state.nodes.filter((n) => n.status === 'READY').length, 1, 'the queue is bounded');
    assert.equal(g.ran.length, 1, 'queued nodes have not started');
    const claimedAt = Math.max(...state.nodes.filter((n) => n.claim).map((n) => Date.parse(n.startedAt)));
    while (Date.now() <= claimedAt + 20) await new Promise((r) => setTimeout(r, 5));
    const openedAt = Date.now();
    g.open();
    const done = await completed(repo, run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    assert.equal(g.ran.length, 4);
    let checked = 0;
    for (const n of done.nodes) {
      const a = n.attempts[0]!;
      // A node claimed ahead (before the gate opened) started when its slot took it, after the gate opened.
      if (Date.parse(n.startedAt) < openedAt && g.ran[0] !== `${run.id}/${n.spec.name}`) {
        assert.ok(Date.parse(a.startedAt) >= openedAt, `${n.spec.name} started when run, not when claimed`);
        checked++;
      }
    }
    assert.equal(checked, 2, 'both queued nodes report their start');
  });

  it('refills its queue once half of it is taken, in one round of claims, not a claim per node taken', async () => {
    const t = turnstile();
    const { repo, pool } = testPool(cleanup, { runtimes: [t.runtime], concurrency: 1, claimAhead: 4 });
    await pool.start();
    const run = await repo.start(independent(12));
    await until(async () => pool.counters.claimedAhead === 4, 'a full queue claimed ahead');
    const ready = async () => (await repo.inspect(run.id)).nodes.filter((n) => n.status === 'READY').length;
    assert.equal(await ready(), 7);
    // The slot takes one queued node: three left, more than half, so nothing more is claimed.
    t.step();
    await until(() => t.ran.length === 2, 'the first queued node running');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(pool.counters.claimedAhead, 4, 'no claim for one node taken');
    assert.equal(await ready(), 7);
    // A second: two left, half the queue, so it is filled again in one go.
    t.step();
    await until(async () => pool.counters.claimedAhead === 6, 'the queue refilled');
    assert.equal(await ready(), 5);
    while (t.ran.length < 12 || (await ready()) > 0) {
      t.step();
      await new Promise((r) => setTimeout(r, 5));
    }
    while ((await repo.inspect(run.id)).conclusion === undefined) {
      t.step();
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal((await repo.inspect(run.id)).conclusion, 'SUCCESS');
    assert.equal(new Set(t.ran).size, 12, 'each node ran once');
  });

  it('claimAhead 0 claims nothing ahead', async () => {
    const g = gate();
    const { repo, pool } = setup({ concurrency: 1, claimAhead: 0 }, g);
    await pool.start();
    const run = await repo.start(independent(3));
    await until(() => g.ran.length === 1, 'the first node running');
    await new Promise((r) => setTimeout(r, 100));
    const state = await repo.inspect(run.id);
    assert.equal(state.nodes.filter((n) => n.status === 'RUNNING').length, 1);
    assert.equal(pool.counters.claimedAhead, 0);
    g.open();
    await completed(repo, run.id);
  });

  it('refuses a claimAhead that is not a whole number from 0', () => {
    const g = gate();
    for (const claimAhead of [-1, 1.5])
      assert.throws(
        () => new AgentPool({ repository: new MemoryRepository(), runtimes: [g.runtime], claimAhead }),
        InvalidArgumentError,
      );
  });

  it('gives its unstarted queue back on stop: READY again, no attempt, the attempt number unchanged', async () => {
    const g = gate();
    const { repo, pool } = setup({ concurrency: 1, claimAhead: 3 }, g);
    await pool.start();
    const run = await repo.start(independent(4));
    await until(async () => pool.counters.claimedAhead === 3, 'three nodes claimed ahead');
    const stopping = pool.stop({ graceMs: 5_000 });
    await until(async () => pool.counters.released === 3, 'the queue given back');
    const state = await repo.inspect(run.id);
    assert.equal(state.nodes.filter((n) => n.status === 'READY').length, 3);
    for (const n of state.nodes.filter((x) => x.status === 'READY')) assert.deepEqual(n.attempts, []);
    g.open();
    await stopping;
    assert.equal(g.ran.length, 1, 'nothing queued was run');
    const after = await repo.inspect(run.id);
    assert.equal(after.nodes.filter((n) => n.status === 'COMPLETED').length, 1, 'the running one finished');
    // Another process runs the rest as first attempts.
    const g2 = gate();
    g2.open();
    const { pool: other } = setup({ concurrency: 2, repository: repo, runtimes: [g2.runtime] }, g2);
    await other.start();
    const done = await completed(repo, run.id);
    for (const n of done.nodes) assert.deepEqual(n.attempts.length, 1, `${n.spec.name} has one attempt`);
    assert.equal(done.conclusion, 'SUCCESS');
  });

  it("drops a queued node whose run was cancelled (the heartbeat's claimsHeld), never running it", async () => {
    const g = gate();
    const { repo, pool } = setup({ concurrency: 1, claimAhead: 1, heartbeatIntervalMs: 50 }, g);
    await pool.start();
    const first = await repo.start(independent(1));
    await until(() => g.ran.length === 1, 'the first run running');
    const second = await repo.start(independent(1));
    await until(async () => pool.counters.claimedAhead === 1, 'the second run claimed ahead');
    assert.equal(node(await repo.inspect(second.id), 'n0').status, 'RUNNING');
    await repo.cancel(second.id);
    // Two heartbeats: the check has run since the cancel.
    await new Promise((r) => setTimeout(r, 300));
    g.open();
    await completed(repo, first.id);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(g.ran, [`${first.id}/n0`], 'the cancelled run never ran');
  });

  it('does not start a queued node whose timeout ran out in the queue: the timeout counts from the claim', async () => {
    const g = gate();
    const ran: string[] = [];
    const work = runtime('work', async (ctx) => {
      ran.push(ctx.node.spec.name);
      return { conclusion: 'SUCCESS' };
    });
    // A long lease: the heartbeat's claimsHeld check (which would drop the timed-out claim) does not come first.
    const { repo, pool } = testPool(cleanup, {
      runtimes: [g.runtime, work],
      concurrency: 1,
      claimAhead: 1,
      leaseTtlMs: 60_000,
    });
    await pool.start();
    const run = await repo.start(
      spec([
        { name: 'hold', runtime: 'gate' },
        { name: 't', runtime: 'work', timeout: '100ms' },
      ]),
    );
    await until(async () => pool.counters.claimedAhead === 1, 't claimed ahead');
    // The store times t out under its queued claim (rule 11: from the claim).
    await until(async () => node(await repo.inspect(run.id), 't').status === 'COMPLETED', 't timed out');
    g.open();
    await until(async () => pool.counters.conflicts === 1, "the slot's finish of t, refused");
    assert.deepEqual(ran, [], 't was never started');
    const done = await completed(repo, run.id);
    const t = node(done, 't');
    assert.equal(t.attempts.length, 1);
    assert.equal(t.attempts[0]!.conclusion, 'ERROR');
    assert.deepEqual(t.attempts[0]!.metadata['adagio.timeout'], ['100ms']);
  });

  it('records a queued orphan as its lapsed ERROR attempt on stop, rather than releasing it', async () => {
    const g = gate();
    const { repo, pool } = setup({ concurrency: 1, claimAhead: 1 }, g);
    // A node another agent held when its lease ended: orphaned (rule 3).
    const run = await repo.start(independent(2));
    const dead = await repo.grantLease(60_000);
    assert.ok(await repo.claim({ runId: run.id, node: 'n1', leaseId: dead.id, agentId: 'dead' }));
    await pool.start();
    await until(async () => g.ran.length === 1, 'n0 running');
    await repo.revokeLease(dead.id);
    await until(async () => pool.counters.claimedAhead === 1, 'the orphan claimed ahead');
    const stopping = pool.stop({ graceMs: 0 });
    g.open();
    await stopping;
    const n1 = node(await repo.inspect(run.id), 'n1');
    assert.deepEqual(
      n1.attempts.map((a) => a.conclusion),
      ['ERROR'],
      'the lapsed attempt is recorded',
    );
    assert.match(new TextDecoder().decode(n1.attempts[0]!.output), /lapsed/);
    assert.equal(n1.status, 'COMPLETED', 'no retry budget: done, as a slot recovering it would leave it');
  });
});
