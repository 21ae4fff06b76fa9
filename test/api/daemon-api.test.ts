/**
 * A real adagiod process (memory backend, in-process agents) driven over
 * gRPC (HTTP/2), gRPC-Web, Connect and the plain JSON routes.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Code, type ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { AdagioClient, type ApiError } from '../../src/client/index.js';
import { ControlPlane } from '../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import * as pb from '../../src/gen/adagio/v1/adagio_pb.js';
import { graphFromJsonText, graphToProto } from '../../src/model/wire.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';

const SEVEN = new URL('../../examples/workflows/seven-node.json', import.meta.url);
const sleeper = (ms: string) => ({
  nodes: [{ name: 'slow', runtime: 'debug', metadata: { 'adagio.arguments.debug.sleep': { values: [ms] } } }],
  edges: [],
});

describe('adagiod API over every transport', () => {
  let d: RunningDaemon;
  let sevenJson: string;
  before(async () => {
    d = await startDaemon(['--agents', '4', '--max-body-bytes', '200000', '--grace-period', '3s']);
    sevenJson = await readFile(SEVEN, 'utf8');
  });
  after(async () => {
    assert.equal(await d.stop(), 0, 'adagiod exits 0 on SIGTERM');
  });

  // A JSON content type on every call, as the guard requires of state-changing ones (docs/security.md).
  const http = (path: string, init?: RequestInit) =>
    fetch(`${d.address}${path}`, {
      ...init,
      headers: { 'Content-Type': 'application/json', ...(init?.headers as Record<string, string>) },
    });

  it('gRPC over HTTP/2: start the 7-node example, watch it to completion, inspect it', async () => {
    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: d.address }));
    const spec = graphToProto(graphFromJsonText(sevenJson));
    const { run } = await grpc.start({ spec });
    assert.ok(run?.id.match(/^[0-9A-HJKMNP-TV-Z]{26}$/), 'a ULID run id');
    const seen = new Set<string>();
    let first = true;
    let last: pb.Run_Status | undefined;
    for await (const msg of grpc.watch({ id: run!.id })) {
      if (first) assert.ok(msg.run, 'the first message is the run as it is now');
      first = false;
      if (msg.node?.status === pb.Node_Status.COMPLETED) seen.add(msg.node.spec!.name);
      last = msg.runStatus;
    }
    assert.equal(last, pb.Run_Status.COMPLETED);
    const { run: done } = await grpc.inspect({ id: run!.id });
    assert.equal(done?.conclusion, pb.Run_Conclusion.SUCCESS);
    assert.equal(done?.nodes.length, 7);
    for (const n of done!.nodes) assert.equal(n.attempts.at(-1)?.conclusion, pb.Attempt_Conclusion.SUCCESS);
  });

  it('gRPC-Web and the typed Connect client see the same runs', async () => {
    const web = createClient(
      ControlPlane,
      createGrpcWebTransport({ baseUrl: d.address, httpVersion: '1.1' }),
    );
    const client = new AdagioClient({ address: d.address });
    const run = await client.start(graphFromJsonText(sevenJson));
    const listed = await web.listRuns({ limit: 100 });
    assert.ok(listed.runs.some((r) => r.id === run.id));
    const agents = await client.listAgents();
    assert.equal(agents.length, 4);
    assert.deepEqual(agents[0]!.runtimes.map((r) => r.name).sort(), ['debug', 'exec']);
  });

  it('JSON routes: PUT /v0/runs, GET /v0/runs, /v0/runs/{id}, /v0/stats, /v0/agents', async () => {
    const put = await http('/v0/runs', { method: 'PUT', body: `{"spec": ${sevenJson}}` });
    assert.equal(put.status, 200);
    const { run } = (await put.json()) as { run: { id: string; status: string } };
    const client = new AdagioClient({ address: d.address });
    for await (const _ of client.watch(run.id)) {
      /* until it completes */
    }
    const got = (await (await http(`/v0/runs/${run.id}`)).json()) as {
      run: { conclusion: string; nodes: unknown[] };
    };
    assert.equal(got.run.conclusion, 'SUCCESS');
    assert.equal(got.run.nodes.length, 7);
    const list = (await (await http('/v0/runs?limit=2')).json()) as {
      runs: { id: string }[];
      nextCursor?: string;
    };
    assert.equal(list.runs.length, 2);
    assert.ok(list.nextCursor, 'a cursor for the next page');
    const next = (await (await http(`/v0/runs?limit=2&cursor=${list.nextCursor}`)).json()) as {
      runs: { id: string }[];
    };
    assert.ok(
      next.runs.every((r) => !list.runs.some((x) => x.id === r.id)),
      'the next page has other runs',
    );
    const future = (Date.now() + 60_000) * 1e6;
    const none = (await (await http(`/v0/runs?start_ns=${future}`)).json()) as { runs?: unknown[] };
    assert.deepEqual(none.runs ?? [], []);
    const stats = (await (await http('/v0/stats')).json()) as { stats: { runCount: string } };
    assert.ok(Number(stats.stats.runCount) >= 3);
    const agents = (await (await http('/v0/agents')).json()) as { agents: unknown[] };
    assert.equal(agents.agents.length, 4);
  });

  it('cancel a long-running run over JSON and over Connect; watch ends with CANCELLED', async () => {
    const client = new AdagioClient({ address: d.address });
    const slow = await client.start(graphFromJsonText(JSON.stringify(sleeper('60s'))));
    const events = client.watch(slow.id)[Symbol.asyncIterator]();
    assert.equal((await events.next()).value?.type, 'snapshot', 'the watch is open before the cancel');
    // Wait until the node runs, so cancel has a claim to refuse.
    for (;;) {
      const r = await client.inspect(slow.id);
      if (r.nodes[0]!.status === 'RUNNING') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const res = await http(`/v0/runs/${slow.id}/cancel`, { method: 'POST' });
    assert.equal(res.status, 200);
    const { run } = (await res.json()) as { run: { status: string; conclusion: string } };
    assert.equal(run.status, 'COMPLETED');
    assert.equal(run.conclusion, 'CANCELLED');
    let lastConclusion: string | undefined;
    for (let r = await events.next(); !r.done; r = await events.next())
      if (r.value.type === 'node') lastConclusion = r.value.runConclusion;
    assert.equal(lastConclusion, 'CANCELLED');
    const again = await client.cancel(slow.id);
    assert.equal(again.conclusion, 'CANCELLED', 'cancelling a completed run is idempotent');
  });

  it('retry and rerun over JSON: 409 for a running run, a retried run keeps its id, a rerun is a new run', async () => {
    const client = new AdagioClient({ address: d.address });
    const slow = await client.start(graphFromJsonText(JSON.stringify(sleeper('60s'))));
    const refused = await http(`/v0/runs/${slow.id}/retry`, { method: 'POST' });
    assert.equal(refused.status, 409);
    assert.match(((await refused.json()) as { message: string }).message, new RegExp(`run ${slow.id} is`));
    await client.cancel(slow.id);
    const bad = await http(`/v0/runs/${slow.id}/retry`, { method: 'POST', body: '{"nodes": [7]}' });
    assert.equal(bad.status, 400);
    const unknown = await http(`/v0/runs/${slow.id}/retry`, { method: 'POST', body: '{"nodes": ["ghost"]}' });
    assert.equal(unknown.status, 400);
    assert.match(((await unknown.json()) as { message: string }).message, /"ghost"/);
    const res = await http(`/v0/runs/${slow.id}/retry`, { method: 'POST', body: '{"nodes": ["slow"]}' });
    assert.equal(res.status, 200);
    const { run } = (await res.json()) as { run: { id: string; status: string } };
    assert.equal(run.id, slow.id);
    assert.notEqual(run.status, 'COMPLETED');
    await client.cancel(slow.id);
    const rerun = await http(`/v0/runs/${slow.id}/rerun`, { method: 'POST' });
    assert.equal(rerun.status, 200);
    const fresh = ((await rerun.json()) as { run: { id: string } }).run.id;
    assert.notEqual(fresh, slow.id);
    await client.cancel(fresh);
  });

  it('the NDJSON watch route streams the run then its transitions', async () => {
    const client = new AdagioClient({ address: d.address });
    const run = await client.start(graphFromJsonText(JSON.stringify(sleeper('100ms'))));
    const text = await (await http(`/v0/runs/${run.id}/watch`)).text();
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines[0]!.run, 'first line: the run');
    assert.equal(lines.at(-1)!.runStatus, 'COMPLETED');
  });

  it('bad input: invalid graph → 400 / INVALID_ARGUMENT with the validation message', async () => {
    const bad = {
      spec: { nodes: [{ name: 'a', runtime: 'debug' }], edges: [{ source: 'a', destination: 'ghost' }] },
    };
    const res = await http('/v0/runs', { method: 'PUT', body: JSON.stringify(bad) });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { code: string; message: string };
    assert.equal(body.code, 'invalid_argument');
    assert.match(body.message, /ghost/);

    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: d.address }));
    const cyclic = create(pb.GraphSpecSchema, {
      nodes: [
        { name: 'x', runtime: 'debug' },
        { name: 'y', runtime: 'debug' },
      ],
      edges: [
        { source: 'x', destination: 'y' },
        { source: 'y', destination: 'x' },
      ],
    });
    await assert.rejects(grpc.start({ spec: cyclic }), (e: ConnectError) => {
      assert.equal(e.code, Code.InvalidArgument);
      assert.match(e.rawMessage, /cycle/);
      return true;
    });
    await assert.rejects(grpc.start({}), (e: ConnectError) => e.code === Code.InvalidArgument);
  });

  it('bad input: malformed JSON, wrong types, invalid UTF-8, binary garbage → 400', async () => {
    for (const body of [
      '{"spec":',
      '[1,2]',
      '{"spec": {"nodes": "many"}}',
      '{"spec": {"nodes": [{"name": 5}]}}',
      '',
    ]) {
      const res = await http('/v0/runs', { method: 'PUT', body });
      assert.equal(res.status, 400, `body ${JSON.stringify(body)}`);
      const j = (await res.json()) as { code: string; message: string };
      assert.equal(j.code, 'invalid_argument');
      assert.ok(j.message.length > 0);
    }
    const utf8 = await http('/v0/runs', { method: 'PUT', body: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]) });
    assert.equal(utf8.status, 400);
    assert.match(((await utf8.json()) as { message: string }).message, /UTF-8/);
    const garbage = await http('/adagio.rpc.controlplane.ControlPlane/Start', {
      method: 'POST',
      headers: { 'Content-Type': 'application/proto' },
      body: Buffer.from([0xff, 0xff, 0xff, 0x01, 0x02]),
    });
    assert.equal(garbage.status, 400, 'malformed protobuf');
    const connectJson = await http('/adagio.rpc.controlplane.ControlPlane/Start', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: '{"spec": {"nodes": [{"name": true}]}}',
    });
    assert.equal(connectJson.status, 400, 'wrong types over Connect JSON');
    assert.equal((await http('/healthz')).status, 200, 'the daemon keeps serving');
  });

  it('unknown run → 404 / NOT_FOUND; unknown route → 404; wrong method → 405', async () => {
    const res = await http('/v0/runs/01ARZ3NDEKTSV4RRFFQ69G5FAV');
    assert.equal(res.status, 404);
    assert.match(((await res.json()) as { message: string }).message, /01ARZ3NDEKTSV4RRFFQ69G5FAV/);
    const client = new AdagioClient({ address: d.address });
    await assert.rejects(client.inspect('nope'), (e: ApiError) => e.code === 'not_found');
    await assert.rejects(client.cancel('nope'), (e: ApiError) => e.code === 'not_found');
    assert.equal((await http('/v0/nothing')).status, 404);
    assert.equal((await http('/v0/stats', { method: 'DELETE' })).status, 405);
    assert.equal((await http('/v0/runs?limit=abc')).status, 400);
  });

  it('a body over the limit → 413 on the JSON route and RESOURCE_EXHAUSTED over gRPC', async () => {
    const huge = JSON.stringify({
      spec: {
        nodes: [{ name: 'a', runtime: 'debug', metadata: { big: { values: ['x'.repeat(300_000)] } } }],
      },
    });
    const res = await http('/v0/runs', { method: 'PUT', body: huge });
    assert.equal(res.status, 413);
    assert.equal(((await res.json()) as { code: string }).code, 'too_large');
    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: d.address }));
    const spec = create(pb.GraphSpecSchema, {
      nodes: [{ name: 'a', runtime: 'debug', metadata: { big: { values: ['x'.repeat(300_000)] } } }],
    });
    await assert.rejects(grpc.start({ spec }), (e: ConnectError) => e.code === Code.ResourceExhausted);
  });

  it('health, readiness and Prometheus metrics', async () => {
    assert.equal(await (await http('/healthz')).text(), 'ok\n');
    assert.equal((await http('/readyz')).status, 200);
    const metrics = await (await http('/metrics')).text();
    assert.match(metrics, /adagio_runs_started_total [1-9]/);
    assert.match(metrics, /adagio_api_request_duration_seconds_count\{route="Start",code="ok"\} [1-9]/);
    assert.match(
      metrics,
      /adagio_node_transitions_total\{transition="finished",conclusion="SUCCESS"\} [1-9]/,
    );
    assert.match(metrics, /adagio_claim_latency_seconds_count [1-9]/);
  });
});
