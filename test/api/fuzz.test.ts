/**
 * Bad-input fuzzing of the API (property-based, fixed seed, bounded count):
 * whatever arrives, the answer is a 2xx for a valid graph or a 4xx with a
 * clear message, never a 5xx, and the server keeps serving.
 * `FUZZ_RUNS=5000 npm test -- fuzz` runs longer; FUZZ_SEED picks another seed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import fc from 'fast-check';
import { ApiServer } from '../../src/api/server.js';
import { MemoryRepository } from '../../src/backends/memory/index.js';
import * as cp from '../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import { LIMITS } from '../../src/model/limits.js';
import { validateGraph } from '../../src/model/validate.js';
import { graphFromJson } from '../../src/model/wire.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FUZZ_SEED ?? 20261124);
const MAX_BODY = 4 * 1024 * 1024;
const params = { numRuns: RUNS, seed: SEED, endOnFailure: true };

describe('API bad-input fuzzing', () => {
  const repository = new MemoryRepository();
  const server = new ApiServer({ repository, ui: false, maxBodyBytes: MAX_BODY });
  let address: string;
  before(async () => {
    address = await server.listen('127.0.0.1', 0);
  });
  after(async () => {
    await server.close();
    await repository.close();
  });

  const put = async (body: string | Uint8Array) => {
    const res = await fetch(`${address}/v0/runs`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body,
    });
    return {
      status: res.status,
      json: (await res.json()) as { code?: string; message?: string; run?: { id: string } },
    };
  };
  const assertClientError = (
    r: { status: number; json: { code?: string; message?: string } },
    what: string,
  ) => {
    assert.ok(
      r.status >= 400 && r.status < 500,
      `${what}: expected a 4xx, got ${r.status} ${JSON.stringify(r.json)}`,
    );
    assert.ok(r.json.code && r.json.message && r.json.message.length < 4000, `${what}: a clear error`);
  };
  const stillServing = async () => assert.equal((await fetch(`${address}/healthz`)).status, 200);

  it('unknown fields are refused on the JSON route, Connect JSON and Connect binary alike', async () => {
    const spec = { nodes: [{ name: 'a', runtime: 'debug', retries: { fail: 3 } }], edges: [] };
    const json = await put(JSON.stringify({ spec }));
    assertClientError(json, 'PUT /v0/runs with "retries"');
    const connectJson = await fetch(`${address}/adagio.rpc.controlplane.ControlPlane/Start`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ spec }),
    });
    assert.equal(connectJson.status, 400, await connectJson.text());
    const valid = toBinary(
      cp.StartRequestSchema,
      create(cp.StartRequestSchema, { spec: { nodes: [{ name: 'a', runtime: 'debug' }], edges: [] } }),
    );
    // Field 15, varint 1: a field this server does not know.
    const withUnknown = new Uint8Array([...valid, (15 << 3) | 0, 1]);
    const connectBinary = await fetch(`${address}/adagio.rpc.controlplane.ControlPlane/Start`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/proto' },
      body: withUnknown,
    });
    assert.equal(connectBinary.status, 400, await connectBinary.text());
    await stillServing();
  });

  it('arbitrary JSON bodies get a 4xx naming the problem', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        const r = await put(JSON.stringify(value));
        // A bare {"spec": {}} and the like are empty graphs: invalid too (no nodes).
        assertClientError(r, JSON.stringify(value).slice(0, 80));
      }),
      params,
    );
    await stillServing();
  });

  // Graph-shaped input: names from a small alphabet so duplicates, cycles and dangling edges are common.
  const name = fc.oneof(
    fc.constantFrom('a', 'b', 'c', 'd', '', ' ', 'ü', '<script>'),
    fc.string({ maxLength: 6 }),
  );
  const node = fc.record(
    {
      name,
      runtime: fc.oneof(fc.constantFrom('debug', 'exec', ''), fc.string({ maxLength: 4 })),
      metadata: fc.dictionary(
        fc.string({ maxLength: 12 }),
        fc.record({ values: fc.array(fc.string(), { maxLength: 3 }) }),
        {
          maxKeys: 3,
        },
      ),
      retry: fc.dictionary(
        fc.constantFrom('fail', 'error', 'bogus'),
        fc.record({ max_attempts: fc.integer({ min: -3, max: 2000 }) }),
        {
          maxKeys: 2,
        },
      ),
    },
    { requiredKeys: [] },
  );
  const graph = fc.record(
    {
      nodes: fc.array(node, { maxLength: 8 }),
      edges: fc.array(fc.record({ source: name, destination: name }, { requiredKeys: [] }), {
        maxLength: 10,
      }),
    },
    { requiredKeys: [] },
  );

  it('graph-shaped input: accepted exactly when the model finds no problem, else 400 with the problem', async () => {
    await fc.assert(
      fc.asyncProperty(graph, async (g) => {
        let problems: string[];
        try {
          problems = validateGraph(graphFromJson(g));
        } catch (e) {
          problems = [(e as Error).message];
        }
        const r = await put(JSON.stringify({ spec: g }));
        if (problems.length === 0) {
          assert.equal(r.status, 200, JSON.stringify(r.json));
          assert.ok(r.json.run?.id);
        } else {
          assert.equal(r.status, 400, `${JSON.stringify(g)} → ${JSON.stringify(r.json)}`);
          assert.equal(r.json.code, 'invalid_argument');
        }
      }),
      params,
    );
    await stillServing();
  });

  it('bytes that are not UTF-8, and binary garbage over Connect and gRPC-Web, get a 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 256 }), async (bytes) => {
        const r = await put(Uint8Array.from([0x7b, 0xc3, 0x28, ...bytes]));
        assertClientError(r, 'invalid UTF-8');
        const rpc = await fetch(`${address}/adagio.rpc.controlplane.ControlPlane/Start`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/proto' },
          body: Uint8Array.from([0xff, ...bytes]),
        });
        assert.ok(rpc.status >= 400 && rpc.status < 500, `Connect protobuf garbage: ${rpc.status}`);
        await rpc.arrayBuffer();
      }),
      { ...params, numRuns: Math.ceil(RUNS / 3) },
    );
    await stillServing();
  });

  it('malformed protobuf over gRPC-Web is INVALID_ARGUMENT, not INTERNAL', async () => {
    // A well-formed envelope around bytes that are not a StartRequest (field 1 claims 100 bytes, has 1).
    const message = Uint8Array.from([0x0a, 100, 0x01]);
    const envelope = new Uint8Array(5 + message.byteLength);
    new DataView(envelope.buffer).setUint32(1, message.byteLength);
    envelope.set(message, 5);
    const res = await fetch(`${address}/adagio.rpc.controlplane.ControlPlane/Start`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/grpc-web+proto', 'X-Grpc-Web': '1' },
      body: envelope,
    });
    await res.arrayBuffer();
    assert.equal(res.headers.get('grpc-status'), '3', `grpc-status ${res.headers.get('grpc-status')}`);
    await stillServing();
  });

  it('limits: too many nodes, oversized metadata, long names, a body over the limit', async () => {
    const many = {
      nodes: Array.from({ length: LIMITS.maxNodes + 1 }, (_, i) => ({ name: `n${i}`, runtime: 'debug' })),
    };
    const r1 = await put(JSON.stringify({ spec: many }));
    assert.equal(r1.status, 400);
    assert.match(r1.json.message!, new RegExp(`limit is ${LIMITS.maxNodes}`));

    const fat = {
      nodes: [
        {
          name: 'a',
          runtime: 'debug',
          metadata: { k: { values: ['x'.repeat(LIMITS.maxNodeMetadataBytes + 1)] } },
        },
      ],
    };
    const r2 = await put(JSON.stringify({ spec: fat }));
    assert.equal(r2.status, 400);
    assert.match(r2.json.message!, /metadata/);

    const long = { nodes: [{ name: 'n'.repeat(LIMITS.maxNameLength + 1), runtime: 'debug' }] };
    assert.equal((await put(JSON.stringify({ spec: long }))).status, 400);

    const r3 = await put(
      JSON.stringify({ spec: { nodes: [{ name: 'x'.repeat(MAX_BODY), runtime: 'debug' }] } }),
    );
    assert.equal(r3.status, 413);
    assert.equal(r3.json.code, 'too_large');
    await stillServing();
  });

  it('deep and huge graphs: a 20,000-node chain is accepted; deeply nested JSON is a 400', async () => {
    const n = LIMITS.maxNodes;
    const chain = {
      nodes: Array.from({ length: n }, (_, i) => ({ name: `c${i}`, runtime: 'debug' })),
      edges: Array.from({ length: n - 1 }, (_, i) => ({ source: `c${i}`, destination: `c${i + 1}` })),
    };
    const ok = await put(JSON.stringify({ spec: chain }));
    assert.equal(ok.status, 200, JSON.stringify(ok.json).slice(0, 200));
    await repository.cancel(ok.json.run!.id);

    const cyclic = { ...chain, edges: [...chain.edges, { source: `c${n - 1}`, destination: 'c0' }] };
    const cyc = await put(JSON.stringify({ spec: cyclic }));
    assert.equal(cyc.status, 400);
    assert.match(cyc.json.message!, /cycle/);

    const nested = `{"spec":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    assertClientError(await put(nested), 'deep nesting');

    const wrongTypes = create(cp.StartRequestSchema, {});
    const empty = await fetch(`${address}/adagio.rpc.controlplane.ControlPlane/Start`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/proto' },
      body: toBinary(cp.StartRequestSchema, wrongTypes),
    });
    assert.equal(empty.status, 400, 'a Start without a spec');
    await empty.arrayBuffer();
    await stillServing();
  });
});
