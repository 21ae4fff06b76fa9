/**
 * Secure defaults of a real adagiod process (issue 17, docs/security.md): a
 * token-less daemon stays on loopback and refuses requests a browser could
 * forge (wrong Host, simple content types, foreign Origin); the agent token is
 * refused on the control plane over JSON, Connect and gRPC; an exec node never
 * sees the daemon's ADAGIOD_* settings.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcTransport } from '@connectrpc/connect-node';
import { AdagioClient } from '../../src/client/index.js';
import { ControlPlane } from '../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import type { GraphSpec } from '../../src/model/types.js';
import { ADAGIOD, REPO_ROOT, type RunningDaemon, startDaemon } from '../support/daemon.js';

const PEOPLE = 'people-S3CRET';
const AGENTS = 'agents-S3CRET';
const ENV_SPEC: GraphSpec = {
  nodes: [
    { name: 'env', runtime: 'exec', metadata: { 'adagio.arguments.exec.command': ['env'] }, retry: {} },
  ],
  edges: [],
};
const SPEC_JSON = JSON.stringify({
  spec: { nodes: [{ name: 'id', runtime: 'exec', metadata: { 'adagio.arguments.exec.command': ['id'] } }] },
});

/** A raw HTTP/1.1 request, so the Host header can be anything (fetch does not let a caller set it). */
function raw(
  address: string,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; body: string }> {
  const url = new URL(address);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, setHost: !('Host' in headers) },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('adagiod secure defaults (real process)', () => {
  describe('token-less, on loopback', () => {
    let d: RunningDaemon;
    before(async () => {
      d = await startDaemon(['--backend-type', 'memory', '--grace-period', '1s'], {
        env: { ADAGIOD_SECRET_LOOKING: 'daemon-S3CRET', ADAGIOD_AGENT_TOKEN: '' },
      });
    });
    after(() => d.stop());

    it('says loudly at startup that it has no token and what exec may do', async () => {
      // Logged just after the "listening" line the start helper waits for.
      for (let i = 0; i < 100 && !/no -api-token/.test(d.logs()); i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.match(
        d.logs(),
        /"level":"warn".*no -api-token: anyone who can connect to this address can start runs/,
      );
    });

    const runsBefore = async () => (await new AdagioClient({ address: d.address }).listRuns()).runs.length;

    it('refuses a simple cross-origin POST: text/plain, a form body, no content type', async () => {
      const n = await runsBefore();
      for (const type of [
        'text/plain;charset=UTF-8',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        undefined,
      ]) {
        const headers: Record<string, string> = { Origin: 'https://evil.example' };
        if (type) headers['Content-Type'] = type;
        const res = await raw(d.address, 'POST', '/v0/runs', headers, SPEC_JSON);
        assert.equal(res.status, 415, `${type}: ${res.body}`);
        const put = await raw(d.address, 'PUT', '/v0/runs', headers, SPEC_JSON);
        assert.equal(put.status, 415, `${type}: ${put.body}`);
      }
      const connect = await raw(
        d.address,
        'POST',
        '/adagio.rpc.controlplane.ControlPlane/Start',
        { 'Content-Type': 'text/plain' },
        SPEC_JSON,
      );
      assert.equal(connect.status, 415, connect.body);
      assert.equal(await runsBefore(), n, 'no run was started');
    });

    it('refuses a JSON POST carrying a foreign Origin (allowed only with -cors-origins)', async () => {
      const res = await raw(
        d.address,
        'PUT',
        '/v0/runs',
        { 'Content-Type': 'application/json', Origin: 'https://evil.example' },
        SPEC_JSON,
      );
      assert.equal(res.status, 403, res.body);
      assert.match(res.body, /cross-origin request from https:\/\/evil\.example refused/);
    });

    it('refuses a DNS-rebinding Host, on reads and writes; loopback names are accepted', async () => {
      for (const host of ['evil.example', `evil.example:${new URL(d.address).port}`, '127.0.0.1.nip.io']) {
        const get = await raw(d.address, 'GET', '/v0/runs', { Host: host });
        assert.equal(get.status, 421, `${host}: ${get.body}`);
        const put = await raw(
          d.address,
          'PUT',
          '/v0/runs',
          { Host: host, 'Content-Type': 'application/json' },
          SPEC_JSON,
        );
        assert.equal(put.status, 421, put.body);
      }
      for (const host of ['localhost', `127.0.0.1:${new URL(d.address).port}`, '[::1]:80'])
        assert.equal((await raw(d.address, 'GET', '/v0/runs', { Host: host })).status, 200, host);
    });

    it('an exec node running `env` sees no ADAGIOD_* variable', async () => {
      const client = new AdagioClient({ address: d.address });
      const run = await client.start(ENV_SPEC);
      for await (const _ of client.watch(run.id)) {
        // to completion
      }
      const done = await client.inspect(run.id);
      const attempt = done.nodes[0]!.attempts[0]!;
      const out = new TextDecoder().decode(attempt.output);
      assert.equal(attempt.conclusion, 'SUCCESS', out);
      assert.match(out, /^ADAGIO_RUN_ID=/m);
      assert.doesNotMatch(out, /ADAGIOD_|S3CRET/);
    });
  });

  it('refuses to listen beyond loopback without -api-token, naming the fix', () => {
    const r = spawnSync(process.execPath, [ADAGIOD, '--listen', '0.0.0.0:0'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: { ...process.env, ADAGIOD_API_TOKEN: '' },
      timeout: 30_000,
    });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /-listen 0\.0\.0\.0:0 reaches beyond this machine: set -api-token/);
  });

  describe('with people and agent tokens', () => {
    let d: RunningDaemon;
    before(async () => {
      d = await startDaemon([
        '--backend-type',
        'memory',
        '--grace-period',
        '1s',
        '--api-token',
        PEOPLE,
        '--agent-token',
        AGENTS,
        '--allowed-hosts',
        'adagio.test',
      ]);
    });
    after(() => d.stop());

    const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

    it('the agent token is refused on control-plane JSON routes and /metrics, accepted on the agent API', async () => {
      for (const [method, path, body] of [
        ['GET', '/v0/runs', undefined],
        ['GET', '/v0/stats', undefined],
        ['GET', '/metrics', undefined],
        ['PUT', '/v0/runs', SPEC_JSON],
      ] as const) {
        const res = await raw(
          d.address,
          method,
          path,
          { ...bearer(AGENTS), 'Content-Type': 'application/json' },
          body,
        );
        assert.equal(res.status, 403, `${method} ${path}: ${res.body}`);
        assert.match(res.body, /the agent token grants the agent API only/);
      }
      const reg = await raw(
        d.address,
        'POST',
        '/v0/agent/grant-lease',
        { ...bearer(AGENTS), 'Content-Type': 'application/json' },
        '{"ttl_ms": 10000}',
      );
      assert.equal(reg.status, 200, reg.body);
      const people = await raw(d.address, 'GET', '/v0/runs', bearer(PEOPLE));
      assert.equal(people.status, 200, 'the people token can do everything');
      assert.equal(
        (
          await raw(
            d.address,
            'POST',
            '/v0/agent/grant-lease',
            { ...bearer(PEOPLE), 'Content-Type': 'application/json' },
            '{}',
          )
        ).status,
        200,
      );
    });

    it('-allowed-hosts adds names the Host check accepts', async () => {
      const ok = await raw(d.address, 'GET', '/v0/stats', { ...bearer(PEOPLE), Host: 'adagio.test:7890' });
      assert.equal(ok.status, 200, ok.body);
      const other = await raw(d.address, 'GET', '/v0/stats', { ...bearer(PEOPLE), Host: 'other.test' });
      assert.equal(other.status, 421, other.body);
      assert.match(other.body, /add it to -allowed-hosts/);
    });

    it('the agent token is refused on the control plane over Connect and gRPC (PERMISSION_DENIED)', async () => {
      const auth = (t: string) => [
        (next: Parameters<import('@connectrpc/connect').Interceptor>[0]) =>
          (req: Parameters<ReturnType<import('@connectrpc/connect').Interceptor>>[0]) => {
            req.header.set('Authorization', `Bearer ${t}`);
            return next(req);
          },
      ];
      for (const transport of [
        createConnectTransport({ baseUrl: d.address, httpVersion: '1.1', interceptors: auth(AGENTS) }),
        createGrpcTransport({ baseUrl: d.address, interceptors: auth(AGENTS) }),
      ]) {
        const cp = createClient(ControlPlane, transport);
        await assert.rejects(
          cp.stats({}),
          (e: unknown) => ConnectError.from(e).code === Code.PermissionDenied,
        );
        await assert.rejects(
          cp.start({}),
          (e: unknown) => ConnectError.from(e).code === Code.PermissionDenied,
        );
      }
      const people = createClient(
        ControlPlane,
        createGrpcTransport({ baseUrl: d.address, interceptors: auth(PEOPLE) }),
      );
      assert.ok(await people.stats({}));
    });
  });
});
