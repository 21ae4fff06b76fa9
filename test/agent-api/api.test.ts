/**
 * The agent API against a real API server over a memory backend: the JSON
 * routes a tiny client uses, the Connect service the TypeScript pool uses
 * through RemoteRepository, fencing (stale and foreign claims are refused with
 * 409 / FAILED_PRECONDITION), auth, and ClaimNext's long-poll and orphan recovery.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { AgentPool } from '../../src/agent/index.js';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { NotSupportedError, RemoteRepository } from '../../src/backends/remote/index.js';
import { AgentService } from '../../src/gen/adagio/rpc/agent/agent_pb.js';
import type { GraphSpec } from '../../src/model/types.js';
import {
  ClaimConflictError,
  InvalidArgumentError,
  LeaseExpiredError,
  UnauthenticatedError,
  UnavailableError,
} from '../../src/protocol/errors.js';
import { defineRuntime } from '../../src/runtimes/define.js';

const TOKEN = 'people-token';
const AGENT_TOKEN = 'agent-token';

const node = (name: string, runtime: string, metadata: Record<string, string[]> = {}, retry = {}) => ({
  name,
  runtime,
  metadata,
  retry,
});

describe('agent API', () => {
  let repo: MemoryRepository;
  let server: ApiServer;
  let url: string;
  before(async () => {
    repo = new MemoryRepository({ leaseCheckIntervalMs: 50 });
    server = new ApiServer({ repository: repo, ui: false, tokens: [TOKEN], agentTokens: [AGENT_TOKEN] });
    url = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close(100);
    await repo.close();
  });

  /** POST /v0/agent/<method>; returns the status and the JSON body. */
  const post = async (method: string, body: unknown, token = AGENT_TOKEN) => {
    const res = await fetch(`${url}/v0/agent/${method}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: JSON answers are checked field by field below.
    return { status: res.status, body: (await res.json()) as any };
  };
  const register = async (runtime: string, ttlMs = 10_000) => {
    const r = await post('register', { runtimes: [{ name: runtime }], ttl_ms: ttlMs });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return { leaseId: r.body.lease.id as string, agentId: r.body.agent.id as string };
  };
  const start = (spec: GraphSpec) => repo.start(spec);

  it('a tiny client: register, claim-next (with inputs), finish; stale and foreign claims get 409', async () => {
    const a = await register('tiny');
    const run = await start({
      nodes: [node('up', 'debug'), node('down', 'tiny', { 'adagio.arguments.tiny.x': ['1'] })],
      edges: [{ source: 'up', destination: 'down' }],
    });
    // Finish the upstream node directly, so the tiny node gets an input.
    const lease = await repo.grantLease();
    const up = await repo.claim({ runId: run.id, node: 'up', leaseId: lease.id, agentId: 'ts' });
    await repo.finish({
      runId: run.id,
      node: 'up',
      claimId: up!.claimId,
      conclusion: 'SUCCESS',
      output: new TextEncoder().encode('from upstream'),
    });

    const c = await post('claim-next', { ...ids(a), runtimes: ['tiny'], wait_ms: 5000 });
    assert.equal(c.status, 200);
    const claimed = c.body.claimed;
    assert.equal(claimed.runId, run.id);
    assert.equal(claimed.attempt, 1);
    assert.equal(claimed.node.spec.name, 'down');
    assert.deepEqual(claimed.node.spec.metadata['adagio.arguments.tiny.x'], { values: ['1'] });
    assert.equal(Buffer.from(claimed.node.inputs.up, 'base64').toString(), 'from upstream');

    const finish = (claimId: string, conclusion = 'SUCCESS') =>
      post('finish', {
        run_id: run.id,
        node_name: 'down',
        claim_id: claimId,
        conclusion,
        output: Buffer.from('ok').toString('base64'),
      });
    const foreign = await finish(up!.claimId);
    assert.equal(foreign.status, 409, 'a claim of another node is refused');
    assert.equal(foreign.body.code, 'conflict');
    assert.equal(foreign.body.reason, 'claim_conflict');
    assert.equal((await finish('01ARZ3NDEKTSV4RRFFQ69G5FAV')).status, 409, 'an unknown claim is refused');
    assert.equal((await finish(claimed.claimId)).status, 200);
    const stale = await finish(claimed.claimId, 'FAIL');
    assert.equal(stale.status, 409, 'a second finish with the same claim is stale');

    const done = await repo.inspect(run.id);
    assert.equal(done.conclusion, 'SUCCESS');
    const attempts = done.nodes.find((n) => n.spec.name === 'down')!.attempts;
    assert.equal(attempts.length, 1, 'refused results are not recorded');
    assert.equal(new TextDecoder().decode(attempts[0]!.output), 'ok');
    assert.equal(attempts[0]!.agentId, a.agentId);

    assert.equal((await post('deregister', ids(a))).status, 200);
    const gone = await post('heartbeat', { lease_id: a.leaseId });
    assert.equal(gone.status, 409, 'deregister with the lease revokes it');
    assert.equal(gone.body.reason, 'lease_expired');
  });

  it('claims-held tells a client its claim is gone once the run is cancelled; bad requests are 400', async () => {
    const a = await register('held');
    const run = await start({ nodes: [node('n', 'held')], edges: [] });
    const c = await post('claim-next', { ...ids(a), runtimes: ['held'], wait_ms: 5000 });
    const ref = { run_id: run.id, node_name: 'n', claim_id: c.body.claimed.claimId };
    const forged = { ...ref, claim_id: 'forged' };
    const held = await post('claims-held', { claims: [ref, forged] });
    assert.equal(held.status, 200, JSON.stringify(held.body));
    assert.deepEqual(held.body.held, [true, false]);
    await repo.cancel(run.id);
    assert.deepEqual((await post('claims-held', { claims: [ref] })).body.held, [false]);
    assert.deepEqual((await post('claims-held', {})).body, {}, 'no claims asked about: none answered');
    const missing = await post('claims-held', { claims: [{ run_id: run.id, node_name: 'n' }] });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /claim_id/);
    const tooMany = await post('claims-held', { claims: Array.from({ length: 1001 }, () => ref) });
    assert.equal(tooMany.status, 400);
    assert.match(tooMany.body.message, /at most 1000/);
    assert.equal((await post('revoke-lease', { lease_id: a.leaseId })).status, 200);
  });

  it('release gives back an unstarted claim (rule 20); finish carries started_at_ms; bad requests are 400', async () => {
    const a = await register('ahead');
    const run = await start({ nodes: [node('n', 'ahead')], edges: [] });
    const c = await post('claim-next', { ...ids(a), runtimes: ['ahead'], wait_ms: 5000 });
    const ref = { run_id: run.id, node_name: 'n', claim_id: c.body.claimed.claimId };
    const released = await post('release', { claims: [ref, { ...ref, claim_id: 'forged' }] });
    assert.equal(released.status, 200, JSON.stringify(released.body));
    assert.deepEqual(released.body.released, [true, false]);
    assert.equal((await repo.inspect(run.id)).nodes[0]!.status, 'READY');
    assert.deepEqual((await post('release', { claims: [ref] })).body.released, [false], 'once only');
    const missing = await post('release', { claims: [{ run_id: run.id, claim_id: 'x' }] });
    assert.equal(missing.status, 400);
    assert.match(missing.body.message, /node_name/);

    const again = await post('claim-next', { ...ids(a), runtimes: ['ahead'], wait_ms: 5000 });
    assert.equal(again.body.claimed.attempt, 1, 'the attempt number is unchanged');
    const claimedAt = Date.parse((await repo.inspect(run.id)).nodes[0]!.startedAt);
    await new Promise((r) => setTimeout(r, 30));
    const startedAt = Date.now();
    await new Promise((r) => setTimeout(r, 30));
    const finish = await post('finish', {
      run_id: run.id,
      node_name: 'n',
      claim_id: again.body.claimed.claimId,
      conclusion: 'SUCCESS',
      started_at_ms: String(startedAt),
    });
    assert.equal(finish.status, 200, JSON.stringify(finish.body));
    const attempt = (await repo.inspect(run.id)).nodes[0]!.attempts[0]!;
    assert.ok(startedAt > claimedAt);
    assert.equal(Date.parse(attempt.startedAt), startedAt);
    assert.equal((await post('revoke-lease', { lease_id: a.leaseId })).status, 200);
  });

  it('claim-next waits for work and wakes when a node becomes READY; answers {} after its wait', async () => {
    const a = await register('poll');
    const empty = await post('claim-next', { ...ids(a), runtimes: ['poll'], wait_ms: 200 });
    assert.deepEqual(empty, { status: 200, body: {} });

    const pending = post('claim-next', { ...ids(a), runtimes: ['poll'], wait_ms: 20_000 });
    await new Promise((r) => setTimeout(r, 200));
    const run = await start({ nodes: [node('p', 'poll')], edges: [] });
    const got = await pending;
    assert.equal(got.body.claimed.runId, run.id, 'the waiting poll claimed the new node');
    assert.equal((await post('revoke-lease', { lease_id: a.leaseId })).status, 200);
  });

  it('claim-next recovers orphans itself (ERROR attempt) and hands out the retry', async () => {
    const dying = await register('orph', 300);
    const run = await start({ nodes: [node('o', 'orph', {}, { error: { maxAttempts: 2 } })], edges: [] });
    const first = await post('claim-next', { ...ids(dying), runtimes: ['orph'], wait_ms: 5000 });
    assert.equal(first.body.claimed.attempt, 1);
    // No heartbeats: the lease lapses and the node is orphaned.
    const alive = await register('orph');
    const retry = await post('claim-next', { ...ids(alive), runtimes: ['orph'], wait_ms: 10_000 });
    assert.equal(retry.status, 200);
    assert.equal(retry.body.claimed.attempt, 2, 'the orphan was recorded as attempt 1');
    assert.equal(retry.body.claimed.orphan, undefined, 'claim-next never returns orphans');
    const late = await post('finish', {
      run_id: run.id,
      node_name: 'o',
      claim_id: first.body.claimed.claimId,
      conclusion: 'SUCCESS',
    });
    assert.equal(late.status, 409, 'the lapsed claim cannot finish any more');
    assert.equal(
      (
        await post('finish', {
          run_id: run.id,
          node_name: 'o',
          claim_id: retry.body.claimed.claimId,
          conclusion: 'SUCCESS',
        })
      ).status,
      200,
    );
    const o = (await repo.inspect(run.id)).nodes[0]!;
    assert.deepEqual(
      o.attempts.map((x) => x.conclusion),
      ['ERROR', 'SUCCESS'],
    );
    assert.match(new TextDecoder().decode(o.attempts[0]!.output), /lapsed.*recovered by agent/);
    assert.equal(
      (await post('claim-next', { ...ids(dying), runtimes: ['orph'], wait_ms: 100 })).status,
      409,
      'a lapsed lease cannot poll',
    );
  });

  it('subscribe streams NDJSON events: READY nodes now, then new ones', async () => {
    const run = await start({ nodes: [node('s1', 'events')], edges: [] });
    const abort = new AbortController();
    const res = await fetch(`${url}/v0/agent/subscribe?runtime=events`, {
      headers: { authorization: `Bearer ${AGENT_TOKEN}` },
      signal: abort.signal,
    });
    assert.equal(res.status, 200);
    const lines: string[] = [];
    let buffered = '';
    const decoder = new TextDecoder();
    const reader = res.body!.getReader();
    let started = false;
    while (lines.length < 2) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      lines.push(...parts.filter((l) => l !== ''));
      if (lines.length >= 1 && !started) {
        started = true;
        await start({ nodes: [node('s2', 'events')], edges: [] });
      }
    }
    abort.abort();
    const events = lines.map((l) => JSON.parse(l).event);
    assert.deepEqual(events[0], { type: 'NODE_READY', runId: run.id, nodeName: 's1', runtime: 'events' });
    assert.equal(events[1].nodeName, 's2');
    const bad = await fetch(`${url}/v0/agent/subscribe`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(bad.status, 400);
  });

  it('refuses bad requests and wrong tokens with the right codes', async () => {
    assert.equal((await post('claim-next', { runtimes: ['x'] })).status, 400);
    assert.equal((await post('register', { runtimes: [] })).status, 400);
    assert.equal((await post('finish', { run_id: 'r', node_name: 'n', claim_id: 'c' })).status, 400);
    const unauth = await post('register', { runtimes: [{ name: 'x' }] }, 'wrong');
    assert.equal(unauth.status, 401);
    assert.equal((await post('nope', {})).status, 404);
    const get = await fetch(`${url}/v0/agent/finish`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(get.status, 405);
    const notFound = await post('claim', {
      run_id: 'no-such-run',
      node_name: 'n',
      ...ids(await register('x')),
    });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.body.reason, 'not_found.run');
  });

  it('gRPC: a stale finish is FAILED_PRECONDITION with the claim_conflict type', async () => {
    const grpc = createClient(
      AgentService,
      createGrpcTransport({
        baseUrl: url,
        interceptors: [
          (next) => (req) => {
            req.header.set('authorization', `Bearer ${AGENT_TOKEN}`);
            return next(req);
          },
        ],
      }),
    );
    const reg = await grpc.register({ runtimes: [{ name: 'grpc' }] });
    const run = await start({ nodes: [node('g', 'grpc')], edges: [] });
    const { claimed } = await grpc.claim({
      runId: run.id,
      nodeName: 'g',
      leaseId: reg.lease!.id,
      agentId: reg.agent!.id,
    });
    assert.ok(claimed);
    await grpc.finish({ runId: run.id, nodeName: 'g', claimId: claimed.claimId, conclusion: 1 });
    await assert.rejects(
      grpc.finish({ runId: run.id, nodeName: 'g', claimId: claimed.claimId, conclusion: 1 }),
      (e: unknown) =>
        e instanceof ConnectError &&
        e.code === Code.FailedPrecondition &&
        e.metadata.get('adagio-error') === 'claim_conflict',
    );
  });

  it('RemoteRepository rebuilds the typed errors the agent pool relies on', async () => {
    // The people token: this test also starts runs and reads the control plane through it.
    const remote = new RemoteRepository({ address: url, token: TOKEN });
    const lease = await remote.grantLease(5000);
    await remote.registerAgent(lease.id, { id: 'r-1', runtimes: [{ name: 'rr' }] });
    assert.ok(
      (await remote.listAgents()).some((a) => a.id === 'r-1'),
      'control-plane reads work too',
    );
    await assert.rejects(new RemoteRepository({ address: url, token: AGENT_TOKEN }).listAgents(), {
      code: 'permission_denied',
      message: /the agent token grants the agent API only/,
    });
    const run = await remote.start({ nodes: [node('n', 'rr')], edges: [] });
    const claimed = await remote.claim({ runId: run.id, node: 'n', leaseId: lease.id, agentId: 'r-1' });
    assert.ok(claimed);
    assert.equal(
      await remote.claim({ runId: run.id, node: 'n', leaseId: lease.id, agentId: 'r-1' }),
      undefined,
      'a node already claimed is not claimable',
    );
    await remote.finish({ runId: run.id, node: 'n', claimId: claimed.claimId, conclusion: 'FAIL' });
    await assert.rejects(
      remote.finish({ runId: run.id, node: 'n', claimId: claimed.claimId, conclusion: 'SUCCESS' }),
      ClaimConflictError,
    );
    await remote.revokeLease(lease.id);
    await assert.rejects(remote.keepAlive(lease.id), LeaseExpiredError);
    await assert.rejects(remote.deleteCompletedRunsBefore(0), NotSupportedError);
    await assert.rejects(
      remote.claim({ runId: '', node: 'n', leaseId: 'l', agentId: 'a' }),
      InvalidArgumentError,
    );
    await assert.rejects(
      new RemoteRepository({ address: url, token: 'wrong' }).grantLease(),
      UnauthenticatedError,
    );
    await assert.rejects(
      new RemoteRepository({ address: 'http://127.0.0.1:1' }).grantLease(),
      UnavailableError,
    );
    await remote.ping();
  });

  it('the TypeScript AgentPool runs unchanged over RemoteRepository', async () => {
    const remote = new RemoteRepository({ address: url, token: AGENT_TOKEN });
    const upper = defineRuntime({
      name: 'upper',
      args: {},
      async run(_args, ctx) {
        const input = Object.values(ctx.node.inputs)[0];
        return {
          conclusion: 'SUCCESS',
          output: new TextDecoder().decode(input ?? new Uint8Array()).toUpperCase(),
        };
      },
    });
    const pool = new AgentPool({ repository: remote, runtimes: [upper], concurrency: 2, leaseTtlMs: 3000 });
    await pool.start();
    try {
      const run = await start({
        nodes: [node('a', 'tiny2'), node('b', 'upper')],
        edges: [{ source: 'a', destination: 'b' }],
      });
      const a = await register('tiny2');
      const c = await post('claim-next', { ...ids(a), runtimes: ['tiny2'], wait_ms: 5000 });
      await post('finish', {
        run_id: run.id,
        node_name: 'a',
        claim_id: c.body.claimed.claimId,
        conclusion: 'SUCCESS',
        output: Buffer.from('mixed').toString('base64'),
      });
      const done = await waitCompleted(repo, run.id);
      assert.equal(done.conclusion, 'SUCCESS');
      const b = done.nodes.find((n) => n.spec.name === 'b')!;
      assert.equal(new TextDecoder().decode(b.attempts[0]!.output), 'MIXED');
      assert.ok(pool.agentIds.includes(b.attempts[0]!.agentId));
    } finally {
      await pool.stop({ graceMs: 1000 });
    }
    assert.ok(
      !(await repo.listAgents()).some((x) => pool.agentIds.includes(x.id)),
      'stopping the pool deregisters its agents through the API',
    );
  });
});

function ids(a: { leaseId: string; agentId: string }) {
  return { lease_id: a.leaseId, agent_id: a.agentId };
}

async function waitCompleted(repo: MemoryRepository, runId: string) {
  for (let i = 0; i < 600; i++) {
    const run = await repo.inspect(runId);
    if (run.status === 'COMPLETED') return run;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${runId} did not complete`);
}
