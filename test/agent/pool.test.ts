import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { AgentPool, type AgentPoolOptions } from '../../src/agent/index.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { LeaseExpiredError } from '../../src/protocol/errors.js';
import { arg } from '../../src/runtimes/args.js';
import { debugRuntime } from '../../src/runtimes/debug.js';
import { defineRuntime } from '../../src/runtimes/define.js';
import { RuntimeRegistry } from '../../src/runtimes/runtime.js';
import { Heartbeat } from '../conformance/harness.js';
import { countingSubscriptions } from '../support/counting.js';
import { withFaults } from './faults.js';
import { aborted, completed, conclusions, node, runtime, spec, testPool, text, until } from './helpers.js';

/** Every pool and repository a test makes, torn down after the file whatever happened. */
const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

function setup(
  options: Partial<AgentPoolOptions> = {},
  repo = new MemoryRepository({ leaseCheckIntervalMs: 20 }),
) {
  return testPool(cleanup, options, repo);
}

describe('agent pool', () => {
  it('registers one agent per slot under one lease, and deregisters on stop', async () => {
    const { repo, pool } = setup({ concurrency: 3, id: 'host-a', hostname: 'host-a' });
    await pool.start();
    const agents = await repo.listAgents();
    assert.deepEqual(
      agents.map((a) => [a.id, a.hostname, a.runtimes.map((r) => r.name)]),
      [
        ['host-a-1', 'host-a', ['debug']],
        ['host-a-2', 'host-a', ['debug']],
        ['host-a-3', 'host-a', ['debug']],
      ],
    );
    const lease = pool.leaseId!;
    await pool.stop();
    assert.deepEqual(await repo.listAgents(), []);
    await assert.rejects(repo.keepAlive(lease), LeaseExpiredError, 'the lease is revoked on stop');
  });

  it('runs nodes to completion and counts what it did', async () => {
    const { repo, pool } = setup();
    await pool.start();
    const run = await repo.start(
      spec(
        [
          { name: 'a', runtime: 'debug' },
          { name: 'b', runtime: 'debug', metadata: { 'adagio.arguments.debug.conclusion': ['fail'] } },
          { name: 'c', runtime: 'debug' },
        ],
        [['a', 'c']],
      ),
    );
    const done = await completed(repo, run.id);
    assert.equal(done.conclusion, 'FAIL');
    assert.deepEqual(conclusions(node(done, 'a')), ['SUCCESS']);
    assert.deepEqual(conclusions(node(done, 'b')), ['FAIL']);
    assert.deepEqual(conclusions(node(done, 'c')), ['SUCCESS']);
    assert.equal(text(node(done, 'c').attempts[0]!.output), 'debug: success');
    assert.ok(pool.agentIds.includes(node(done, 'a').attempts[0]!.agentId));
    assert.deepEqual(pool.counters.finished, { SUCCESS: 2, FAIL: 1, ERROR: 0 });
    assert.equal(pool.counters.claimed, 3);
  });

  it('a runtime that throws, rejects or returns garbage is an ERROR attempt, and the pool lives on', async () => {
    const registry = new RuntimeRegistry([
      runtime('throws', () => {
        throw new Error('kaboom');
      }),
      { name: 'rejects', run: () => Promise.reject(new TypeError('bad type')) },
      runtime('garbage', () => ({ conclusion: 'MAYBE' }) as never),
      debugRuntime(),
    ]);
    const { repo, pool } = setup({ runtimes: registry });
    await pool.start();
    const run = await repo.start(
      spec(
        [
          { name: 't', runtime: 'throws' },
          { name: 'r', runtime: 'rejects' },
          { name: 'g', runtime: 'garbage' },
          { name: 'p', runtime: 'debug', metadata: { 'adagio.arguments.debug.conclusion': ['panic'] } },
        ],
        [],
      ),
    );
    const done = await completed(repo, run.id);
    const out = (n: string) => text(node(done, n).attempts[0]!.output);
    assert.deepEqual(
      done.nodes.map((n) => conclusions(n)),
      [['ERROR'], ['ERROR'], ['ERROR'], ['ERROR']],
    );
    assert.equal(out('t'), 'runtime "throws" failed: kaboom');
    assert.equal(out('r'), 'runtime "rejects" failed: bad type');
    assert.match(out('g'), /runtime "garbage" returned an invalid result/);
    assert.match(out('p'), /runtime "debug" failed: debug: panic/);
    const next = await repo.start(spec([{ name: 'ok', runtime: 'debug' }]));
    assert.equal((await completed(repo, next.id)).conclusion, 'SUCCESS', 'the pool still works');
  });

  it('a result the store refuses for good is recorded as an ERROR saying why, not left RUNNING', async () => {
    const registry = new RuntimeRegistry([
      runtime('chatty', () => ({ conclusion: 'SUCCESS', metadata: { k: ['x'.repeat(100 * 1024)] } })),
      debugRuntime(),
    ]);
    const { repo, pool } = setup({ runtimes: registry });
    await pool.start();
    const run = await repo.start(spec([{ name: 'c', runtime: 'chatty' }]));
    const done = await completed(repo, run.id);
    assert.deepEqual(conclusions(node(done, 'c')), ['ERROR']);
    assert.match(
      text(node(done, 'c').attempts[0]!.output),
      /refused this attempt's SUCCESS result: .*limit is 65536/,
    );
  });

  it('a runtime hanging past the timeout is an ERROR attempt; its signal aborts and the slot frees', async () => {
    let sawAbort = false;
    const hang = runtime('hang', async (ctx) => {
      if (ctx.attempt > 1) return { conclusion: 'SUCCESS', output: 'second time lucky' };
      await aborted(ctx.signal);
      sawAbort = true;
      return new Promise(() => {}); // and never answers
    });
    const { repo, pool } = setup({ runtimes: [hang], concurrency: 1, runtimeTimeoutMs: 150 });
    await pool.start();
    const run = await repo.start(spec([{ name: 'h', runtime: 'hang', retry: { error: 2 } }]));
    const done = await completed(repo, run.id);
    const h = node(done, 'h');
    assert.deepEqual(conclusions(h), ['ERROR', 'SUCCESS'], 'the one slot was free for the retry');
    assert.equal(
      text(h.attempts[0]!.output),
      'runtime "hang" timed out after 150ms (the agent\'s default timeout)',
    );
    assert.ok(sawAbort, 'the runtime saw ctx.signal abort');
  });

  it("a node's own timeout (rule 11) stops its attempt with an ERROR naming it; the agent has no default limit", async () => {
    const hang = runtime('hang', async (ctx) => {
      await aborted(ctx.signal);
      return { conclusion: 'SUCCESS', output: 'too late' };
    });
    const { repo, pool } = setup({ runtimes: [hang], concurrency: 1 });
    await pool.start();
    const run = await repo.start(spec([{ name: 'h', runtime: 'hang', timeout: '150ms' }]));
    const h = node(await completed(repo, run.id), 'h');
    assert.deepEqual(conclusions(h), ['ERROR']);
    // The pool's timer or the store's sweeper (rule 11), whichever comes first: the same words and metadata.
    assert.match(text(h.attempts[0]!.output), /timed out after 150ms \(the node's timeout\)/);
    assert.deepEqual(h.attempts[0]!.metadata['adagio.timeout'], ['150ms']);
  });

  it('a missing argument is an ERROR attempt naming it', async () => {
    const greet = defineRuntime({
      name: 'greet',
      args: { who: arg.string() },
      run: (a) => ({ conclusion: 'SUCCESS', output: `hello ${a.who}` }),
    });
    const { repo, pool } = setup({ runtimes: [greet] });
    await pool.start();
    const run = await repo.start(
      spec([
        { name: 'x', runtime: 'greet' },
        { name: 'y', runtime: 'greet', metadata: { 'adagio.runtime.greet.who': ['old spelling'] } },
      ]),
    );
    const done = await completed(repo, run.id);
    assert.match(
      text(node(done, 'x').attempts[0]!.output),
      /missing required argument "who" of runtime "greet"/,
    );
    assert.equal(text(node(done, 'y').attempts[0]!.output), 'hello old spelling');
  });

  it('graceful stop: no new claims, running work finishes within the grace period', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const slow = runtime('slow', async () => {
      await gate;
      return { conclusion: 'SUCCESS', output: 'finished during shutdown' };
    });
    const { repo, pool } = setup({ runtimes: [slow], concurrency: 1 });
    await pool.start();
    const run = await repo.start(spec([{ name: 's', runtime: 'slow' }]));
    await until(() => pool.running === 1, 'the node to be claimed');
    const stopping = pool.stop({ graceMs: 5000 });
    const later = await repo.start(spec([{ name: 'later', runtime: 'slow' }]));
    setTimeout(release, 100);
    await stopping;
    const done = await repo.inspect(run.id);
    assert.deepEqual(conclusions(node(done, 's')), ['SUCCESS']);
    assert.equal(
      node(await repo.inspect(later.id), 'later').status,
      'READY',
      'nothing claimed while stopping',
    );
    assert.deepEqual(await repo.listAgents(), []);
  });

  it('a slot takes its next node while its results are recorded, up to four per slot and the claim-ahead bound; stop waits for them', async () => {
    // A real store behind a slow link for finish only: results wait at the gate until it opens.
    const memory = new MemoryRepository({ leaseCheckIntervalMs: 20 });
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let held = 0;
    const slowFinish = new Proxy(memory, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop !== 'finish') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<MemoryRepository['finish']>) => {
          held++;
          await gate;
          return target.finish(...args);
        };
      },
    });
    const ran: string[] = [];
    const note = runtime('note', (ctx) => {
      ran.push(ctx.node.spec.name);
      return { conclusion: 'SUCCESS' };
    });
    // One slot, one node claimed ahead: four results per slot and one for the queue may wait.
    const { pool } = setup({ runtimes: [note], concurrency: 1, claimAhead: 1 }, slowFinish);
    await pool.start();
    const names = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7'];
    const runs = [];
    for (const name of names) {
      runs.push(await memory.start(spec([{ name, runtime: 'note' }])));
      await until(() => ran.length === runs.length || held === 6, `${name} to run or the slot to fill`);
    }
    await new Promise((r) => setTimeout(r, 100)); // time enough to (wrongly) run the seventh
    assert.deepEqual(
      ran,
      names.slice(0, 6),
      "the slot ran on while five results waited, then waited on the sixth's",
    );
    assert.equal(held, 6, 'six results are waiting to be recorded: five the slot left, and its own');
    assert.equal(pool.running, 6);
    const stopping = pool.stop({ graceMs: 5_000 });
    let stopped = false;
    void stopping.then(() => {
      stopped = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(stopped, false, 'stop waits for results being recorded');
    open();
    await stopping;
    for (const [i, run] of runs.slice(0, 6).entries())
      assert.deepEqual(conclusions(node(await memory.inspect(run.id), names[i]!)), ['SUCCESS']);
    assert.equal(
      node(await memory.inspect(runs[6]!.id), 'n7').status,
      'READY',
      'never run (a claim ahead is given back)',
    );
  });

  it('holds its subscription back once a thousand nodes wait for a slot; the rest come as slots take them', async () => {
    // A real store; the subscription counts what the pool has taken from it.
    const memory = new MemoryRepository({ leaseCheckIntervalMs: 20 });
    const { repo: counting, delivered } = countingSubscriptions(memory);
    let open!: () => void;
    const gate = new Promise<void>((r) => {
      open = r;
    });
    let ran = 0;
    const held = runtime('held', async () => {
      ran++;
      await gate;
      return { conclusion: 'SUCCESS' };
    });
    const backlog = 3_000;
    const runs = [];
    for (let i = 0; i < backlog; i++) runs.push(await memory.start(spec([{ name: 'a', runtime: 'held' }])));
    const { pool } = setup({ runtimes: [held], concurrency: 1 }, counting);
    await pool.start();
    await until(() => ran === 1 && delivered() >= 1_024, 'the slot busy and a thousand nodes waiting');
    await new Promise((r) => setTimeout(r, 200)); // time enough to (wrongly) take the whole backlog
    // 1,024 waiting, and the ones the slot and its claim-ahead queue took.
    assert.ok(
      delivered() <= 1_024 + 4,
      `the pool took ${delivered()} of ${backlog} events while 1,024 waited`,
    );
    open();
    await until(() => pool.counters.finished.SUCCESS === backlog, 'the whole backlog', 60_000);
    assert.ok(delivered() >= backlog);
    for (const run of runs.slice(-3))
      assert.deepEqual(conclusions(node(await memory.inspect(run.id), 'a')), ['SUCCESS']);
  });

  it('stop past the grace period aborts running work: it reports ERROR, or is left to lapse', async () => {
    const polite = runtime('polite', async (ctx) => {
      await aborted(ctx.signal);
      return { conclusion: 'ERROR', output: `stopped: ${(ctx.signal.reason as Error).message}` };
    });
    const stubborn = runtime('stubborn', () => new Promise(() => {}));
    const { repo, pool } = setup({ runtimes: [polite, stubborn], concurrency: 2 });
    const recovery = setup({ runtimes: [polite, stubborn], concurrency: 1 }, repo).pool;
    await pool.start();
    const run = await repo.start(
      spec([
        { name: 'p', runtime: 'polite' },
        { name: 's', runtime: 'stubborn' },
      ]),
    );
    await until(() => pool.running === 2, 'both nodes claimed');
    await pool.stop({ graceMs: 50 });
    let state = await repo.inspect(run.id);
    assert.deepEqual(conclusions(node(state, 'p')), ['ERROR']);
    assert.equal(text(node(state, 'p').attempts[0]!.output), 'stopped: agent shutting down');
    assert.equal(
      node(state, 's').claim?.orphaned,
      true,
      'the stubborn node is orphaned by the revoked lease',
    );
    // Another agent records the orphan as an ERROR attempt (rule 3).
    await recovery.start();
    state = await completed(repo, run.id);
    assert.deepEqual(conclusions(node(state, 's')), ['ERROR']);
    assert.match(text(node(state, 's').attempts[0]!.output), /^claim \S+ .*lapsed/);
    assert.equal(recovery.counters.orphansRecovered, 1);
  });

  it('a result for a cancelled run is refused, logged and dropped; the pool goes on', async () => {
    const wait = runtime('wait', async (ctx) => {
      await new Promise((r) => setTimeout(r, 100));
      return { conclusion: 'SUCCESS', output: ctx.node.spec.name };
    });
    const { repo, pool } = setup({ runtimes: [wait] });
    await pool.start();
    const run = await repo.start(spec([{ name: 'w', runtime: 'wait' }]));
    await until(() => pool.running === 1, 'the node to be claimed');
    await repo.cancel(run.id);
    await until(() => pool.counters.conflicts === 1, 'the refused finish');
    const state = await repo.inspect(run.id);
    assert.equal(state.conclusion, 'CANCELLED');
    assert.deepEqual(conclusions(node(state, 'w')), ['CANCELLED']);
    const next = await repo.start(spec([{ name: 'x', runtime: 'wait' }]));
    assert.equal((await completed(repo, next.id)).conclusion, 'SUCCESS');
  });

  it('cancelling a run stops its running attempt within a heartbeat, and the slot takes other work', async () => {
    let stopped: unknown;
    const long = runtime('long', async (ctx) => {
      if (ctx.node.spec.name === 'quick') return { conclusion: 'SUCCESS' };
      await aborted(ctx.signal);
      stopped = ctx.signal.reason;
      return { conclusion: 'SUCCESS', output: 'too late' };
    });
    const { repo, pool } = setup({ runtimes: [long], concurrency: 1, heartbeatIntervalMs: 50 });
    await pool.start();
    const run = await repo.start(spec([{ name: 'forever', runtime: 'long' }]));
    await until(() => pool.running === 1, 'the node to be claimed');
    await repo.cancel(run.id);
    await until(() => stopped !== undefined, 'the runtime to be told to stop');
    assert.match((stopped as Error).message, /claim no longer held: the run was cancelled/);
    assert.equal(pool.counters.claimsLost, 1);
    const next = await repo.start(spec([{ name: 'quick', runtime: 'long' }]));
    assert.equal((await completed(repo, next.id)).conclusion, 'SUCCESS', 'the one slot is free again');
    const state = await repo.inspect(run.id);
    assert.deepEqual(
      conclusions(node(state, 'forever')),
      ['CANCELLED'],
      'the late result was never recorded',
    );
  });

  it('streams output while the attempt runs; a cancelled attempt keeps what it streamed', async () => {
    const talker = runtime('talk', async (ctx) => {
      ctx.write?.('line 1\n');
      ctx.write?.(new TextEncoder().encode('line 2\n'));
      await aborted(ctx.signal);
      return { conclusion: 'SUCCESS', output: 'never recorded' };
    });
    const { repo, pool } = setup({ runtimes: [talker], concurrency: 1, heartbeatIntervalMs: 50 });
    await pool.start();
    const run = await repo.start(spec([{ name: 'chatty', runtime: 'talk' }]));
    await until(
      async () => text(node(await repo.inspect(run.id), 'chatty').liveOutput) === 'line 1\nline 2\n',
      'the streamed lines to show while the node runs',
    );
    await repo.cancel(run.id);
    const state = await repo.inspect(run.id);
    const attempt = node(state, 'chatty').attempts[0]!;
    assert.equal(attempt.conclusion, 'CANCELLED');
    assert.equal(text(attempt.output), 'line 1\nline 2\n');
  });

  it('exec streams stdout as it comes; the recorded output is the whole stdout, then any note', async () => {
    const { execRuntime } = await import('../../src/runtimes/exec.js');
    const { repo, pool } = setup({ runtimes: [execRuntime({ killGraceMs: 200 })], concurrency: 2 });
    await pool.start();
    const exec = (script: string, timeout?: string) => ({
      'adagio.arguments.exec.command': ['sh'],
      'adagio.arguments.exec.args': ['-c', script],
      ...(timeout ? { 'adagio.arguments.exec.timeout': [timeout] } : {}),
    });
    const run = await repo.start(
      spec([
        { name: 'slow', runtime: 'exec', metadata: exec('echo one; sleep 0.6; echo two') },
        { name: 'stuck', runtime: 'exec', metadata: exec('echo started; sleep 30', '1500ms') },
      ]),
    );
    await until(
      async () => text(node(await repo.inspect(run.id), 'slow').liveOutput) === 'one\n',
      'the first line before the program ends',
    );
    const done = await completed(repo, run.id);
    assert.equal(text(node(done, 'slow').attempts[0]!.output), 'one\ntwo\n');
    const stuck = node(done, 'stuck').attempts[0]!;
    assert.equal(stuck.conclusion, 'ERROR');
    assert.match(text(stuck.output), /^started\n\[adagio\] exec: "sh" timed out after 1\.5s; killed\n$/);
  });

  it('a dead agent: its lapsed claim is recovered by a pool as an ERROR attempt, then retried', async () => {
    const { repo, pool } = setup();
    // The "dead agent": claims under a short lease, heartbeating until its claim is made (however loaded the
    // machine), and never again.
    const lease = await repo.grantLease(200);
    const heartbeat = new Heartbeat(repo, lease);
    await repo.registerAgent(lease.id, { id: 'dead-agent', runtimes: [{ name: 'debug' }] });
    const run = await repo.start(spec([{ name: 'n', runtime: 'debug', retry: { error: 2 } }]));
    const claim = await repo.claim({ runId: run.id, node: 'n', leaseId: lease.id, agentId: 'dead-agent' });
    assert.ok(claim);
    heartbeat.stop();
    await pool.start();
    const done = await completed(repo, run.id);
    const n = node(done, 'n');
    assert.deepEqual(conclusions(n), ['ERROR', 'SUCCESS']);
    assert.match(
      text(n.attempts[0]!.output),
      new RegExp(`^claim ${claim.claimId} of agent dead-agent lapsed`),
    );
    assert.equal(pool.counters.orphansRecovered, 1);
  });

  it('a revoked lease: running work is abandoned, the pool registers again and another pool recovers', async () => {
    let runs = 0;
    const hang = runtime('hang', async (ctx) => {
      runs++;
      if (ctx.attempt === 1) return new Promise(() => {});
      return { conclusion: 'SUCCESS', output: `attempt ${ctx.attempt}` };
    });
    const { repo, pool: a } = setup({ runtimes: [hang], id: 'a', heartbeatIntervalMs: 30 });
    const b = setup({ runtimes: [hang], id: 'b' }, repo).pool;
    await a.start();
    const run = await repo.start(spec([{ name: 'h', runtime: 'hang', retry: { error: 2 } }]));
    await until(() => a.running === 1, 'pool a to claim');
    const first = a.leaseId!;
    await b.start();
    await repo.revokeLease(first); // as if a's lease had lapsed
    const done = await completed(repo, run.id);
    const h = node(done, 'h');
    assert.deepEqual(conclusions(h), ['ERROR', 'SUCCESS']);
    assert.match(text(h.attempts[0]!.output), /lapsed/);
    assert.equal(a.counters.orphansRecovered + b.counters.orphansRecovered, 1);
    await until(() => a.leaseId !== undefined && a.leaseId !== first, 'pool a to hold a new lease');
    assert.equal(a.counters.leasesLost, 1);
    assert.equal(a.running, 0, 'the abandoned attempt freed its slot');
    const ids = (await repo.listAgents()).map((x) => x.id);
    assert.ok(ids.includes('a-1') && ids.includes('b-1'), `both pools registered: ${ids}`);
    assert.equal(runs, 2);
  });

  it('transient store errors are retried with backoff, never fatal', async () => {
    const memory = new MemoryRepository({ leaseCheckIntervalMs: 20 });
    const { repository, injected } = withFaults(memory, {
      grantLease: 2,
      subscribe: 2,
      claim: 2,
      finish: 2,
      keepAlive: 2,
    });
    cleanup.push(() => memory.close());
    const faulty = new AgentPool({
      repository,
      runtimes: [debugRuntime()],
      concurrency: 1,
      heartbeatIntervalMs: 20,
      backoff: { initialMs: 5, maxMs: 20 },
    });
    cleanup.push(() => faulty.stop({ graceMs: 0 }));
    await faulty.start();
    const run = await memory.start(
      spec(
        [
          { name: 'a', runtime: 'debug' },
          { name: 'b', runtime: 'debug' },
        ],
        [['a', 'b']],
      ),
    );
    const done = await completed(memory, run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    await until(() => (injected.keepAlive ?? 0) === 2, 'heartbeats to hit the injected faults');
    assert.deepEqual(injected, { grantLease: 2, subscribe: 2, claim: 2, finish: 2, keepAlive: 2 });
    assert.equal(faulty.counters.leasesLost, 0);
  });

  it('refuses duplicate runtime names and an empty runtime list', () => {
    const repo = new MemoryRepository();
    cleanup.push(() => repo.close());
    assert.throws(
      () => new AgentPool({ repository: repo, runtimes: [debugRuntime(), debugRuntime()] }),
      /runtime "debug" is registered twice/,
    );
    assert.throws(() => new AgentPool({ repository: repo, runtimes: [] }), /at least one runtime/);
  });

  it('refuses a heartbeat interval that lets its lease lapse, and a negative runtime timeout', () => {
    const repo = new MemoryRepository();
    cleanup.push(() => repo.close());
    const runtimes = [debugRuntime()];
    assert.throws(
      () => new AgentPool({ repository: repo, runtimes, leaseTtlMs: 1000, heartbeatIntervalMs: 5000 }),
      /heartbeatIntervalMs must be above 0 and below leaseTtlMs \(1000\), got 5000/,
    );
    assert.throws(
      () => new AgentPool({ repository: repo, runtimes, leaseTtlMs: 1000, heartbeatIntervalMs: 1000 }),
      /below leaseTtlMs/,
    );
    assert.throws(
      () => new AgentPool({ repository: repo, runtimes, runtimeTimeoutMs: -5 }),
      /runtimeTimeoutMs/,
    );
    assert.doesNotThrow(
      () => new AgentPool({ repository: repo, runtimes, leaseTtlMs: 1000, heartbeatIntervalMs: 300 }),
    );
  });
});
