/**
 * Workflows and run identity over the wire (rules 16, 17): the JSON routes
 * and gRPC, against an API server over the memory backend.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import { ControlPlane } from '../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import * as pb from '../../src/gen/adagio/v1/adagio_pb.js';

const NIGHTLY = new URL('../../examples/definitions/nightly.json', import.meta.url);

describe('workflows over the API', () => {
  let store: MemoryRepository;
  let server: ApiServer;
  let address: string;
  let nightly: Record<string, unknown>;
  before(async () => {
    store = new MemoryRepository();
    server = new ApiServer({ repository: store, ui: false });
    address = await server.listen('127.0.0.1', 0);
    nightly = JSON.parse(await readFile(NIGHTLY, 'utf8')) as Record<string, unknown>;
  });
  after(async () => {
    await server.close(500);
    await store.close();
  });

  const http = (path: string, init?: RequestInit) =>
    fetch(`${address}${path}`, { ...init, headers: { 'Content-Type': 'application/json' } });
  const json = async (path: string, init?: RequestInit) => {
    const res = await http(path, init);
    // biome-ignore lint/suspicious/noExplicitAny: wire JSON, read by shape in the assertions that follow.
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  it('PUT /v0/workflows/{name} stores versions; GET lists and shows them; the same body again is the same version', async () => {
    const put = await json('/v0/workflows/nightly', { method: 'PUT', body: JSON.stringify(nightly) });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.workflow.version, 1);
    assert.equal(put.body.workflow.name, 'nightly');
    assert.deepEqual(put.body.workflow.params[0], {
      name: 'date',
      required: true,
      description: 'the day to process, e.g. 2026-01-31',
    });
    assert.equal(put.body.workflow.params[1].default, 'staging');
    const again = await json('/v0/workflows/nightly', { method: 'PUT', body: JSON.stringify(nightly) });
    assert.equal(again.body.workflow.version, 1);
    const v2 = await json('/v0/workflows/nightly', {
      method: 'PUT',
      body: JSON.stringify({ ...nightly, description: 'changed' }),
    });
    assert.equal(v2.body.workflow.version, 2);

    const list = await json('/v0/workflows');
    assert.deepEqual(
      list.body.workflows.map((w: { name: string; version: number }) => [w.name, w.version]),
      [['nightly', 2]],
    );
    assert.equal(list.body.workflows[0].spec, undefined, 'lists leave the graph out');
    assert.equal((await json('/v0/workflows/nightly')).body.workflow.description, 'changed');
    const v1 = await json('/v0/workflows/nightly?version=1');
    assert.equal(v1.body.workflow.description, nightly.description);
    assert.equal(v1.body.workflow.spec.nodes.length, 2);
    const versions = await json('/v0/workflows/nightly/versions');
    assert.deepEqual(
      versions.body.workflows.map((w: { version: number }) => w.version),
      [2, 1],
    );
  });

  it('PUT /v0/runs with a workflow and params starts it with its name and labels; a repeated request id returns the same run', async () => {
    const body = {
      workflow: 'nightly',
      version: 1,
      params: { date: '2026-01-31' },
      labels: { team: 'data' },
      request_id: 'api-req-1',
    };
    const first = await json('/v0/runs', { method: 'PUT', body: JSON.stringify(body) });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const run = first.body.run;
    assert.equal(run.name, 'nightly');
    assert.equal(run.workflow, 'nightly');
    assert.equal(run.workflowVersion, 1);
    assert.deepEqual(run.params, { date: '2026-01-31', env: 'staging' });
    assert.deepEqual(run.labels, { team: 'data' });
    assert.deepEqual(run.nodes[1].spec.metadata['adagio.arguments.exec.args'].values, [
      'loaded 2026-01-31 into staging',
    ]);
    const second = await json('/v0/runs', { method: 'PUT', body: JSON.stringify(body) });
    assert.equal(second.body.run.id, run.id);

    const other = await json('/v0/runs', {
      method: 'PUT',
      body: JSON.stringify({
        workflow: 'nightly',
        params: { date: 'x', env: 'prod' },
        name: 'special',
        labels: { team: 'web' },
      }),
    });
    assert.equal(other.status, 200);
    const byLabel = await json('/v0/runs?label=team=data');
    assert.deepEqual(
      byLabel.body.runs.map((r: { id: string }) => r.id),
      [run.id],
    );
    assert.equal(byLabel.body.runs[0].name, 'nightly');
    const byWorkflow = await json('/v0/runs?workflow=nightly&status=WAITING');
    assert.equal(byWorkflow.body.runs.length, 2);
    const bySearch = await json('/v0/runs?q=SPEC');
    assert.deepEqual(
      bySearch.body.runs.map((r: { name: string }) => r.name),
      ['special'],
    );
    assert.equal((await json('/v0/runs?conclusion=success')).body.runs?.length ?? 0, 0);
  });

  it('gRPC: PutWorkflow, Start with a workflow, ListRuns with filters', async () => {
    const grpc = createClient(ControlPlane, createGrpcTransport({ baseUrl: address }));
    const { workflow } = await grpc.putWorkflow({
      name: 'grpc-flow',
      spec: {
        nodes: [{ name: 'a', runtime: 'debug', metadata: { m: { values: ['{{params.p}}'] } } }],
        edges: [],
      },
      params: [{ name: 'p', default: 'dflt' }],
    });
    assert.equal(workflow?.version, 1);
    const { run } = await grpc.start({ workflow: 'grpc-flow', labels: { via: 'grpc' } });
    assert.deepEqual(run?.nodes[0]?.spec?.metadata.m?.values, ['dflt']);
    const listed = await grpc.listRuns({
      workflow: 'grpc-flow',
      labels: { via: 'grpc' },
      status: pb.Run_Status.WAITING,
    });
    assert.deepEqual(
      listed.runs.map((r) => r.id),
      [run!.id],
    );
    assert.equal((await grpc.getWorkflow({ name: 'grpc-flow' })).workflow?.params[0]?.default, 'dflt');
    await grpc.deleteWorkflow({ name: 'grpc-flow' });
    assert.deepEqual(
      (await grpc.listWorkflows({})).workflows.map((w) => w.name),
      ['nightly'],
    );
  });

  it('bad input is 400 naming the problem; an unknown workflow is 404', async () => {
    const cases: [string, RequestInit | undefined, number, RegExp][] = [
      ['/v0/workflows/nope', undefined, 404, /workflow "nope" not found/],
      ['/v0/workflows/nightly?version=99', undefined, 404, /nightly@99/],
      ['/v0/workflows/nightly?version=zero', undefined, 400, /version must be a whole number/],
      ['/v0/runs', { method: 'PUT', body: '{"workflow": "nope"}' }, 404, /workflow "nope"/],
      ['/v0/runs', { method: 'PUT', body: '{"workflow": "nightly"}' }, 400, /missing required param "date"/],
      [
        '/v0/runs',
        { method: 'PUT', body: '{"workflow": "nightly", "params": {"date": "d", "colour": "red"}}' },
        400,
        /unknown param "colour"/,
      ],
      [
        '/v0/workflows/bad',
        {
          method: 'PUT',
          body: JSON.stringify({
            spec: { nodes: [{ name: 'a', runtime: 'x', metadata: { k: { values: ['{{params.q}}'] } } }] },
          }),
        },
        400,
        /declares no param "q"/,
      ],
      ['/v0/workflows/bad', { method: 'PUT', body: '{"description": "no spec"}' }, 400, /"spec"/],
      ['/v0/runs?status=DONE', undefined, 400, /status must be one of/],
      ['/v0/runs?label=novalue', undefined, 400, /label filter must be key=value/],
      ['/v0/runs?label=team=a&label=team=b', undefined, 400, /names "team" twice/],
      ['/v0/workflows/nope', { method: 'DELETE' }, 404, /workflow "nope" not found/],
    ];
    for (const [path, init, status, message] of cases) {
      const res = await json(path, init);
      assert.equal(res.status, status, `${init?.method ?? 'GET'} ${path}: ${JSON.stringify(res.body)}`);
      assert.match(res.body.message, message, path);
    }
    assert.equal((await json('/v0/workflows')).body.workflows.length, 1, 'nothing half-written');
  });
  it('POST /v0/runs/{id}/rerun of a workflow run starts the same workflow version with its params, name and labels; once the workflow is deleted, its graph with the name and labels', async () => {
    const put = await json('/v0/workflows/rerun-me', {
      method: 'PUT',
      body: JSON.stringify({ ...nightly, name: 'rerun-me' }),
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const started = await json('/v0/runs', {
      method: 'PUT',
      body: JSON.stringify({
        workflow: 'rerun-me',
        params: { date: '2026-02-01', env: 'prod' },
        name: 'feb first',
        labels: { team: 'reruns' },
        request_id: 'rerun-req-1',
      }),
    });
    assert.equal(started.status, 200, JSON.stringify(started.body));
    // A newer version must not be what the rerun starts: it repeats the run's version.
    await json('/v0/workflows/rerun-me', {
      method: 'PUT',
      body: JSON.stringify({ ...nightly, name: 'rerun-me', description: 'v2' }),
    });
    const rerun = await json(`/v0/runs/${started.body.run.id}/rerun`, { method: 'POST' });
    assert.equal(rerun.status, 200, JSON.stringify(rerun.body));
    const again = rerun.body.run;
    assert.notEqual(again.id, started.body.run.id);
    assert.equal(again.workflow, 'rerun-me');
    assert.equal(again.workflowVersion, 1);
    assert.deepEqual(again.params, { date: '2026-02-01', env: 'prod' });
    assert.equal(again.name, 'feb first');
    assert.deepEqual(again.labels, { team: 'reruns' });
    assert.equal(again.requestId ?? '', '', 'a rerun is a new start, not the same request');
    assert.deepEqual(
      again.nodes.map((n: { spec: unknown }) => n.spec),
      started.body.run.nodes.map((n: { spec: unknown }) => n.spec),
    );

    assert.equal((await json('/v0/workflows/rerun-me', { method: 'DELETE' })).status, 200);
    const orphan = await json(`/v0/runs/${started.body.run.id}/rerun`, { method: 'POST' });
    assert.equal(orphan.status, 200, JSON.stringify(orphan.body));
    assert.equal(orphan.body.run.workflow ?? '', '');
    assert.equal(orphan.body.run.name, 'feb first');
    assert.deepEqual(orphan.body.run.labels, { team: 'reruns' });
    assert.deepEqual(
      orphan.body.run.nodes.map((n: { spec: unknown }) => n.spec),
      started.body.run.nodes.map((n: { spec: unknown }) => n.spec),
    );
  });
});
