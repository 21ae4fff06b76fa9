/**
 * Agents that hold no store credentials: an API (memory backend in `adagiod
 * api`; etcd behind an in-process API server) with two remote agent
 * processes, `adagiod agent -backend-type remote` (runtime exec) and the
 * Python reference agent (runtime shell). Mixed runs complete across both;
 * a Python agent killed with SIGKILL mid-node leaves its nodes orphaned, and
 * another agent records that and runs the retry, or the node fails per policy.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ApiServer } from '../../src/api/server.js';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec, Run } from '../../src/model/types.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { etcdRepository } from '../support/etcd.js';

const PY_AGENT = fileURLToPath(new URL('../../examples/agents/python/adagio_agent.py', import.meta.url));
const TOKEN = 'people-token';
const AGENT_TOKEN = 'agents-only-token';

interface Api {
  address: string;
  stop(): Promise<void>;
}

const BACKENDS: { name: string; start(): Promise<Api> }[] = [
  {
    name: 'memory backend in adagiod api',
    async start() {
      const d = await startDaemon([
        'api',
        '--backend-type',
        'memory',
        '--api-token',
        TOKEN,
        '--agent-token',
        AGENT_TOKEN,
        '--ui',
        'false',
      ]);
      return {
        address: d.address,
        stop: async () => {
          assert.equal(await d.stop(), 0);
        },
      };
    },
  },
  {
    name: 'etcd backend behind an API server',
    async start() {
      const { repository, teardown } = await etcdRepository();
      const server = new ApiServer({ repository, ui: false, tokens: [TOKEN], agentTokens: [AGENT_TOKEN] });
      const address = await server.listen('127.0.0.1', 0);
      return {
        address,
        stop: async () => {
          await server.close(500);
          await teardown();
        },
      };
    },
  },
];

for (const backend of BACKENDS) {
  describe(`remote agents over the agent API (${backend.name})`, () => {
    let api: Api;
    let tsAgent: RunningDaemon;
    const pyAgents: PyAgent[] = [];
    let client: AdagioClient;
    const scratch = mkdtempSync(join(tmpdir(), 'adagio-agent-api-'));
    const pidFiles: string[] = [];

    before(async () => {
      api = await backend.start();
      client = new AdagioClient({ address: api.address, token: TOKEN });
      tsAgent = await startDaemon([
        'agent',
        '--backend-type',
        'remote',
        '--api-address',
        api.address,
        '--agent-token',
        AGENT_TOKEN,
        '--runtimes',
        'exec',
        '--agents',
        '2',
        '--lease-ttl',
        '2s',
        '--grace-period',
        '2s',
      ]);
      pyAgents.push(await startPyAgent(api.address, 'py-one', 2));
    });

    after(async () => {
      for (const p of pyAgents) await p.stop();
      // The shell commands of the killed agent outlive it; end them (they recorded their pids).
      for (const pid of pidFiles.flatMap(readPids)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(scratch, { recursive: true, force: true });
      assert.equal(await tsAgent.stop(), 0, 'the remote agent exits 0 on SIGTERM');
      await api.stop();
    });

    it('a mixed run passes outputs between the Python (shell) and TypeScript (exec) agents', async () => {
      const run = await client.start(
        graph(
          [
            shell('hello', 'printf \'hello from %s\' "$ADAGIO_NODE"'),
            exec('upper', 'tr', ['a-z', 'A-Z'], 'hello'),
            shell('shout', 'printf \'%s!\' "$(cat)"', { 'adagio.inputs.shell.stdin': ['upper'] }),
            shell('env', 'printf \'%s\' "$ADAGIO_INPUT_HELLO"'),
            shell('fails', 'echo boom; exit 3', {}, { fail: { maxAttempts: 2 } }),
          ],
          [
            ['hello', 'upper'],
            ['upper', 'shout'],
            ['hello', 'env'],
          ],
        ),
      );
      const done = await waitCompleted(client, run.id);
      const out = (name: string) => {
        const n = done.nodes.find((x) => x.spec.name === name)!;
        return { n, text: new TextDecoder().decode(n.attempts.at(-1)!.output) };
      };
      assert.equal(out('hello').text, 'hello from hello');
      assert.equal(out('upper').text, 'HELLO FROM HELLO');
      assert.equal(out('shout').text, 'HELLO FROM HELLO!');
      assert.equal(out('env').text, 'hello from hello', 'inputs are in the environment too');
      const fails = out('fails').n;
      assert.deepEqual(
        fails.attempts.map((a) => a.conclusion),
        ['FAIL', 'FAIL'],
        'exit 3 is FAIL, retried once per its policy',
      );
      assert.equal(done.conclusion, 'FAIL');
      for (const name of ['hello', 'shout', 'env'])
        assert.match(out(name).n.attempts[0]!.agentId, /^py-one-/, `${name} ran on the Python agent`);
      assert.doesNotMatch(out('upper').n.attempts[0]!.agentId, /^py-/, 'upper ran on the TypeScript agent');
      const agents = await client.listAgents();
      assert.ok(agents.some((a) => a.runtimes.some((r) => r.name === 'shell')));
      assert.ok(agents.some((a) => a.runtimes.some((r) => r.name === 'exec')));
    });

    it('cancelling a run kills its running exec command on the remote TypeScript agent', async () => {
      const pidFile = join(scratch, `cancel-${Date.now()}`);
      pidFiles.push(pidFile);
      const run = await client.start(
        graph([exec('long', 'sh', ['-c', `echo $$ > '${pidFile}'; exec sleep 120`], undefined)], []),
      );
      await waitFor(async () => readPids(pidFile).length === 1, 'the command to start');
      const [pid] = readPids(pidFile) as [number];
      assert.ok(isAlive(pid));
      const cancelled = await client.cancel(run.id);
      assert.equal(cancelled.conclusion, 'CANCELLED');
      // The agent learns of it with its next heartbeat (every lease TTL / 3) and kills the command.
      await waitFor(async () => !isAlive(pid), 'the cancelled command to be killed', 20_000);
      const n = (await client.inspect(run.id)).nodes[0]!;
      assert.deepEqual(
        n.attempts.map((a) => a.conclusion),
        ['CANCELLED'],
        "the killed command's result is not recorded",
      );
    });

    it('cancelling a run kills its running shell command on the Python agent; what it streamed stays', async () => {
      const pidFile = join(scratch, `cancel-py-${Date.now()}`);
      pidFiles.push(pidFile);
      const run = await client.start(
        graph([shell('long', `echo started; echo $$ > '${pidFile}'; exec sleep 120`)], []),
      );
      await waitFor(async () => readPids(pidFile).length === 1, 'the command to start');
      await waitFor(
        async () =>
          new TextDecoder().decode((await client.inspect(run.id)).nodes[0]!.liveOutput) === 'started\n',
        'the Python agent to stream the first line while the command runs',
      );
      const [pid] = readPids(pidFile) as [number];
      await client.cancel(run.id);
      await waitFor(async () => !isAlive(pid), 'the cancelled command to be killed', 20_000);
      // The agent logs why after it killed the command: wait for the line rather than race it.
      await waitFor(
        async () => /claim no longer held/.test(pyAgents[0]!.logs()),
        'the agent to log the lost claim',
      );
      assert.deepEqual(
        (await client.inspect(run.id)).nodes[0]!.attempts.map((a) => [
          a.conclusion,
          new TextDecoder().decode(a.output),
        ]),
        [['CANCELLED', 'started\n']],
      );
    });

    it("the Python agent stops a shell command at its node's timeout (rule 11): an ERROR naming it", async () => {
      const pidFile = join(scratch, `timeout-py-${Date.now()}`);
      pidFiles.push(pidFile);
      const node = {
        ...shell('slow', `echo started; echo $$ > '${pidFile}'; exec sleep 120`),
        timeout: '1s',
      };
      const run = await client.start(graph([node], []));
      const done = await waitCompleted(client, run.id);
      await waitFor(
        async () => readPids(pidFile).every((pid) => !isAlive(pid)),
        'the command to be killed',
        20_000,
      );
      const attempts = done.nodes[0]!.attempts;
      assert.deepEqual(
        attempts.map((a) => a.conclusion),
        ['ERROR'],
      );
      // The agent's own kill, or the store's sweeper if it came first: both name the node's timeout.
      assert.match(
        new TextDecoder().decode(attempts[0]!.output),
        /timed out after 1s \(the node's timeout\)/,
      );
    });

    it('kill -9 of the Python agent mid-node: the retry completes elsewhere, or the node fails per policy', async () => {
      const pidFile = join(scratch, `pids-${Date.now()}`);
      pidFiles.push(pidFile);
      // Attempt 1 records its pid and sleeps (as `exec`, so the pid is the sleep); later attempts finish at once.
      const body = `echo $$ >> '${pidFile}'; if [ "$ADAGIO_ATTEMPT" = 1 ]; then exec sleep 120; fi; echo "attempt $ADAGIO_ATTEMPT"`;
      const run = await client.start(
        graph(
          [
            shell('retried', body, {}, { error: { maxAttempts: 2 } }),
            shell('once', body),
            exec('after', 'echo', ['downstream of retried'], undefined),
          ],
          [['retried', 'after']],
        ),
      );
      const victim = pyAgents[0]!;
      await waitFor(async () => {
        const r = await client.inspect(run.id);
        return ['retried', 'once'].every((name) => {
          const n = r.nodes.find((x) => x.spec.name === name)!;
          return n.status === 'RUNNING' && n.claim?.agentId.startsWith('py-one-');
        });
      }, 'both shell nodes RUNNING on the first Python agent');
      await waitFor(async () => readPids(pidFile).length === 2, 'both commands started');
      victim.kill('SIGKILL');
      pyAgents.push(await startPyAgent(api.address, 'py-two', 1));

      const done = await waitCompleted(client, run.id);
      const retried = done.nodes.find((n) => n.spec.name === 'retried')!;
      assert.deepEqual(
        retried.attempts.map((a) => a.conclusion),
        ['ERROR', 'SUCCESS'],
      );
      assert.match(new TextDecoder().decode(retried.attempts[0]!.output), /lapsed.*stopped heartbeating/);
      assert.match(retried.attempts[1]!.agentId, /^py-two-/, 'the retry ran on the other Python agent');
      assert.equal(new TextDecoder().decode(retried.attempts[1]!.output), 'attempt 2\n');
      const once = done.nodes.find((n) => n.spec.name === 'once')!;
      assert.deepEqual(
        once.attempts.map((a) => a.conclusion),
        ['ERROR'],
        'no retry for ERROR: the orphan is the last attempt',
      );
      assert.equal(done.nodes.find((n) => n.spec.name === 'after')!.attempts[0]!.conclusion, 'SUCCESS');
      assert.equal(done.conclusion, 'FAIL');
    });
  });
}

// ---- helpers

interface PyAgent {
  child: ChildProcess;
  logs(): string;
  kill(signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/** The Python reference agent, resolved once it registered. */
function startPyAgent(address: string, id: string, workers: number): Promise<PyAgent> {
  const child = spawn(
    'python3',
    [
      PY_AGENT,
      '--address',
      address,
      '--workers',
      String(workers),
      '--lease-ttl',
      '2',
      '--wait',
      '5',
      '--grace',
      '2',
      '--agent-id',
      id,
    ],
    { env: { ...process.env, ADAGIO_TOKEN: AGENT_TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const agent: PyAgent = {
    child,
    logs: () => stderr,
    kill: (signal) => child.kill(signal),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`python agent did not register:\n${stderr}`));
    }, 30_000);
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      if (/"msg": "registered"/.test(stderr)) {
        clearTimeout(timer);
        resolve(agent);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`python agent exited with ${code}:\n${stderr}`));
    });
  });
}

function graph(nodes: GraphSpec['nodes'], edges: [string, string][]): GraphSpec {
  return { nodes, edges: edges.map(([source, destination]) => ({ source, destination })) };
}

function shell(
  name: string,
  command: string,
  extra: Record<string, string[]> = {},
  retry: GraphSpec['nodes'][number]['retry'] = {},
): GraphSpec['nodes'][number] {
  return {
    name,
    runtime: 'shell',
    metadata: { 'adagio.arguments.shell.command': [command], ...extra },
    retry,
  };
}

function exec(name: string, command: string, args: string[], stdinFrom: string | undefined) {
  const metadata: Record<string, string[]> = {
    'adagio.arguments.exec.command': [command],
    'adagio.arguments.exec.args': args,
  };
  if (stdinFrom) metadata['adagio.inputs.exec.stdin'] = [stdinFrom];
  return { name, runtime: 'exec', metadata, retry: {} };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readPids(path: string): number[] {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => /^\d+$/.test(l))
      .map(Number);
  } catch {
    return [];
  }
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for: ${what}`);
}

async function waitCompleted(client: AdagioClient, id: string): Promise<Run> {
  let run: Run | undefined;
  await waitFor(
    async () => {
      run = await client.inspect(id);
      return run.status === 'COMPLETED';
    },
    `run ${id} to complete`,
    90_000,
  );
  return run!;
}
