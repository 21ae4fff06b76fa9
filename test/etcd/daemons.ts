import assert from 'node:assert/strict';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec, Run } from '../../src/model/types.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import type { EtcdCluster } from '../support/etcd.js';
import { uniqueNamespace } from '../support/etcd.js';

/** Real `adagiod` processes sharing one etcd, for the multi-process etcd tests. */
export interface Deployment {
  api: RunningDaemon;
  agents: RunningDaemon[];
  client: AdagioClient;
  agentArgs: string[];
  stop(): Promise<void>;
}

export async function deploy(
  cluster: EtcdCluster,
  agents: number,
  extraAgentArgs: string[] = [],
): Promise<Deployment> {
  const backend = [
    '--backend-type',
    'etcd',
    '--etcd-addresses',
    cluster.endpoints.join(','),
    '--etcd-namespace',
    uniqueNamespace('adagio-mp'),
  ];
  // startDaemon learns readiness from info-level log lines.
  const env = { ADAGIOD_LOG_LEVEL: 'info' };
  const api = await startDaemon(['api', ...backend], { env });
  const agentArgs = ['agent', ...backend, ...extraAgentArgs];
  const started: RunningDaemon[] = [];
  try {
    for (let i = 0; i < agents; i++) started.push(await startDaemon(agentArgs, { env }));
  } catch (e) {
    await Promise.all([api, ...started].map((d) => d.stop('SIGKILL')));
    throw e;
  }
  return {
    api,
    agents: started,
    client: new AdagioClient({ address: api.address, timeoutMs: 30_000 }),
    agentArgs,
    stop: async () => {
      await Promise.all([api, ...started].map((d) => d.stop()));
    },
  };
}

/** Calls `fn` until it answers: the API may be waiting out an unavailable store. */
export async function retrying<T>(fn: () => Promise<T>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Polls until every run completed; fails naming what is stuck. */
export async function allComplete(client: AdagioClient, ids: string[], ms: number): Promise<Run[]> {
  const deadline = Date.now() + ms;
  const done = new Map<string, Run>();
  for (;;) {
    for (const id of ids) {
      if (done.has(id)) continue;
      const run = await client.inspect(id).catch(() => undefined);
      if (run?.status === 'COMPLETED') done.set(id, run);
    }
    if (done.size === ids.length) return ids.map((id) => done.get(id)!);
    if (Date.now() > deadline) {
      const stuck: string[] = [];
      for (const id of ids.filter((i) => !done.has(i)).slice(0, 5)) {
        const run = await client.inspect(id).catch(() => undefined);
        const open = run?.nodes.filter((n) => n.status !== 'COMPLETED') ?? [];
        stuck.push(
          `${id}: ${open.map((n) => `${n.spec.name}=${n.status}${n.claim ? `(${n.claim.id})` : ''}`).join(' ')}`,
        );
      }
      assert.fail(
        `${ids.length - done.size} of ${ids.length} runs did not complete in ${ms} ms\n${stuck.join('\n')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Starts `count` runs of `spec`, retrying each through an unavailable store. */
export async function startRuns(client: AdagioClient, spec: GraphSpec, count: number, ids: string[]) {
  for (let i = 0; i < count; i++) ids.push((await retrying(() => client.start(spec))).id);
}
