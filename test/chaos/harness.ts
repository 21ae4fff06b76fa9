/**
 * The chaos harness: one `adagiod api` and three `adagiod agent` processes on
 * one store, a few hundred runs of mixed graphs, and a driver that kill -9s,
 * pauses (SIGSTOP past the lease TTL) and restarts agents, and disrupts the
 * store itself. Afterwards it checks the promises from the API and from an
 * execution ledger that the work itself appends to.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AdagioClient } from '../../src/client/index.js';
import type { GraphSpec, Run } from '../../src/model/types.js';
import { graphFromJson } from '../../src/model/wire.js';
import { seededRandom } from '../../src/runtimes/random.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';

export interface ChaosBackend {
  name: string;
  /** adagiod flags selecting the store. */
  args: string[];
  /** Disrupts the store once (restart a member, restart the server); resolves when it is back. */
  disrupt?: () => Promise<string>;
  teardown(): Promise<void>;
}

export interface ChaosOptions {
  runs: number;
  /** Agent disruptions (kill -9 or pause) to make while runs are in flight. */
  kills: number;
  /** Times to call backend.disrupt(). */
  storeDisruptions: number;
  seed?: number;
  leaseTtl?: string;
  /** Each agent process's claim-ahead bound (default 4, as many as its agents). */
  claimAhead?: number;
  log?: (line: string) => void;
}

export interface ChaosReport {
  backend: string;
  runs: number;
  nodes: number;
  attempts: number;
  kills: number;
  pauses: number;
  storeDisruptions: string[];
  orphansRecovered: number;
  /** Attempts ended at their node's timeout (rule 11: metadata adagio.timeout), by an agent or the store. */
  nodeTimeouts: number;
  /** Runs that concluded TIMED_OUT: none should, their deadline being far off (rule 13). */
  runsTimedOut: number;
  executions: number;
  /** Runs not COMPLETED, or nodes left READY/RUNNING/WAITING, at the end. */
  lost: number;
  /** Nodes with more than one SUCCESS attempt. */
  doubleFinishes: number;
  /** Attempts recorded under a claim that had lapsed. */
  lapsedAccepted: number;
  /** all_done cleanup nodes that completed without an attempt (rule 14 says they always run). */
  cleanupsNotRun: number;
  /** SUCCESS attempts of ledger nodes with no execution under their claim in the ledger. */
  unexecutedSuccesses: number;
  /** Nodes whose last attempt started after its claim: run from an agent's claim-ahead queue. */
  startedFromQueue: number;
  statsMatch: boolean;
  seconds: number;
}

const AGENTS = 3;

export async function runChaos(backend: ChaosBackend, o: ChaosOptions): Promise<ChaosReport> {
  const log = o.log ?? (() => {});
  const random = seededRandom(o.seed ?? 7);
  const dir = mkdtempSync(join(tmpdir(), 'adagio-chaos-'));
  const ledger = join(dir, 'ledger');
  writeFileSync(ledger, '');
  const leaseTtl = o.leaseTtl ?? '2s';
  // Claim-ahead on (design rule 20): each agent process holds a local queue of claims its kill -9 orphans.
  const agentArgs = [
    ...backend.args,
    '--agents',
    '4',
    '--claim-ahead',
    String(o.claimAhead ?? 4),
    '--lease-ttl',
    leaseTtl,
    '--grace-period',
    '1s',
  ];
  const started = Date.now();
  const api = await startDaemon(['api', ...backend.args]);
  const agents: RunningDaemon[] = [];
  for (let i = 0; i < AGENTS; i++) agents.push(await startDaemon(['agent', ...agentArgs]));
  /** Every agent process started, killed ones included: their logs explain a lost node. */
  const everAgents = [...agents];
  const client = new AdagioClient({ address: api.address, timeoutMs: 60_000 });
  let kills = 0;
  let pauses = 0;
  const disruptions: string[] = [];
  try {
    // Submit runs a few at a time so the load spans the disruptions.
    const ids: string[] = [];
    let submitting = true;
    const submitter = (async () => {
      for (let i = 0; i < o.runs; i++) {
        ids.push((await retrying(() => client.start(mixedGraph(i, ledger)))).id);
        if (i % 10 === 9) await sleep(150);
      }
      submitting = false;
    })();

    // The driver: disruptions spread over the submission period, then until every kill is made.
    const disruptionsDue = [
      ...Array.from({ length: o.kills }, () => 'agent' as const),
      ...Array.from({ length: o.storeDisruptions }, () => 'store' as const),
    ].sort(() => random() - 0.5);
    for (const kind of disruptionsDue) {
      await sleep(submitting ? 400 + random() * 400 : 300);
      if (kind === 'store' && backend.disrupt) {
        disruptions.push(await backend.disrupt());
        log(`store: ${disruptions.at(-1)}`);
        continue;
      }
      const i = Math.floor(random() * agents.length);
      const victim = agents[i]!;
      if (random() < 0.75) {
        victim.child.kill('SIGKILL');
        await victim.exited;
        kills++;
        log(`agent ${i}: kill -9`);
        agents[i] = await startDaemon(['agent', ...agentArgs]);
        everAgents.push(agents[i]!);
      } else {
        // A paused agent outlives its lease; on waking its results must be refused.
        victim.child.kill('SIGSTOP');
        pauses++;
        log(`agent ${i}: paused past its lease`);
        await sleep(parseSeconds(leaseTtl) * 1000 * 2);
        victim.child.kill('SIGCONT');
      }
    }
    await submitter;

    // Every run must complete; wait on each with Watch.
    const deadline = Date.now() + 180_000;
    for (const id of ids) {
      for (;;) {
        const run = await retrying(() => client.inspect(id));
        if (run.status === 'COMPLETED') break;
        if (Date.now() > deadline) break;
        await sleep(200);
      }
    }
    const runs = await Promise.all(ids.map((id) => retrying(() => client.inspect(id))));
    const stats = await retrying(() => client.stats());
    const logs = everAgents.map((a) => a.logs()).join('');
    return check(backend.name, runs, stats, readFileSync(ledger, 'utf8'), logs, {
      kills,
      pauses,
      disruptions,
      seconds: (Date.now() - started) / 1000,
    });
  } finally {
    await Promise.allSettled(agents.map((a) => a.stop('SIGKILL')));
    await api.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function check(
  backend: string,
  runs: Run[],
  stats: { runCount: number; nodeCounts: Record<string, number> },
  ledgerText: string,
  /** The agents' logs (JSON lines). */
  logs: string,
  extra: { kills: number; pauses: number; disruptions: string[]; seconds: number },
): ChaosReport {
  const executed = new Map<string, number>();
  for (const line of ledgerText.split('\n')) {
    const claim = line.split(' ', 1)[0];
    if (claim) executed.set(claim, (executed.get(claim) ?? 0) + 1);
  }
  const logLines = logs.split('\n');
  const lapsed = new Set<string>();
  const recorded = new Set<string>();
  let nodes = 0;
  let attempts = 0;
  let lost = 0;
  let doubleFinishes = 0;
  let unexecutedSuccesses = 0;
  let orphansRecovered = 0;
  let nodeTimeouts = 0;
  let runsTimedOut = 0;
  let cleanupsNotRun = 0;
  let startedFromQueue = 0;
  for (const run of runs) {
    if (run.status !== 'COMPLETED') lost++;
    if (run.conclusion === 'TIMED_OUT') runsTimedOut++;
    for (const n of run.nodes) {
      nodes++;
      attempts += n.attempts.length;
      if (n.status !== 'COMPLETED') {
        lost++;
        // What a lost node looked like: enough to start from when this fails.
        console.log(
          `# lost: ${run.id}/${n.spec.name} ${n.status} after ${n.attempts.length} attempts${n.claim ? `, claim ${n.claim.id} by ${n.claim.agentId}${n.claim.orphaned ? ' (orphaned)' : ''}` : ''}`,
        );
        // And what the agents logged of its run (warnings and errors are logged at info and above).
        const holder = n.claim?.agentId.replace(/-\d+$/, '');
        for (const line of logLines)
          if (line.includes(run.id) || (holder && line.includes(holder) && !line.includes('"level":"info"')))
            console.log(`#   ${line}`);
      }
      if (n.attempts.filter((a) => a.conclusion === 'SUCCESS').length > 1) doubleFinishes++;
      if (n.spec.name === CLEANUP && n.attempts.length === 0) cleanupsNotRun++;
      const last = n.attempts[n.attempts.length - 1];
      // Only a claimed-ahead node reports a start later than its claim (the node's startedAt).
      if (last?.startedAt && Date.parse(last.startedAt) > Date.parse(n.startedAt)) startedFromQueue++;
      for (const a of n.attempts) {
        recorded.add(a.claimId);
        if (a.metadata['adagio.timeout']) nodeTimeouts++;
        const m = /^claim (\S+) .*lapsed/.exec(new TextDecoder().decode(a.output));
        if (a.conclusion === 'ERROR' && m) {
          orphansRecovered++;
          lapsed.add(m[1]!);
        }
        if (a.conclusion === 'SUCCESS' && n.spec.runtime === 'exec' && (executed.get(a.claimId) ?? 0) !== 1)
          unexecutedSuccesses++;
      }
    }
  }
  const lapsedAccepted = [...lapsed].filter((c) => recorded.has(c)).length;
  const statsMatch =
    stats.runCount === runs.length &&
    stats.nodeCounts.COMPLETED === nodes &&
    stats.nodeCounts.RUNNING === 0 &&
    stats.nodeCounts.READY === 0 &&
    stats.nodeCounts.WAITING === 0;
  return {
    backend,
    runs: runs.length,
    nodes,
    attempts,
    kills: extra.kills,
    pauses: extra.pauses,
    storeDisruptions: extra.disruptions,
    orphansRecovered,
    nodeTimeouts,
    runsTimedOut,
    executions: [...executed.values()].reduce((a, b) => a + b, 0),
    lost,
    doubleFinishes,
    cleanupsNotRun,
    lapsedAccepted,
    unexecutedSuccesses,
    startedFromQueue,
    statsMatch,
    seconds: extra.seconds,
  };
}

export function formatReport(r: ChaosReport): string {
  return [
    `chaos ${r.backend}: ${r.runs} runs, ${r.nodes} nodes, ${r.attempts} attempts, ${r.executions} executions in ${r.seconds.toFixed(0)} s`,
    `  agent kills (-9): ${r.kills}, agent pauses past the lease: ${r.pauses}, store disruptions: ${r.storeDisruptions.length ? r.storeDisruptions.join('; ') : 'none'}`,
    `  orphans recovered: ${r.orphansRecovered}, attempts ended at their node timeout: ${r.nodeTimeouts}, runs timed out: ${r.runsTimedOut}, nodes run from a claim-ahead queue: ${r.startedFromQueue}`,
    `  lost = ${r.lost}, double-finishes = ${r.doubleFinishes}, cleanups not run = ${r.cleanupsNotRun}, lapsed claims accepted = ${r.lapsedAccepted}, successes without execution = ${r.unexecutedSuccesses}, stats match = ${r.statsMatch}`,
  ].join('\n');
}

/** The all_done node every chaos graph ends with: it must run in every run. */
export const CLEANUP = 'cleanup';

/**
 * Mixed graphs: ledger-writing exec nodes (each execution appends its claim
 * id, some with a node timeout a paused agent can overrun: the store then
 * records the ERROR, rule 11), flaky debug nodes with retries (some delayed
 * by a backoff, rule 5), fan-in and fan-out, and trigger-ruled handlers (an
 * all_done cleanup, a one_failed handler); every graph has a deadline far
 * beyond what it needs (rule 13), which must not cut any run short.
 */
export function mixedGraph(i: number, ledger: string): GraphSpec {
  const work = (name: string, seconds: string, timeout?: string) => ({
    ...(timeout ? { timeout } : {}),
    name,
    runtime: 'exec',
    metadata: {
      'adagio.arguments.exec.command': { values: ['sh'] },
      'adagio.arguments.exec.args': {
        values: [
          '-c',
          `echo "$ADAGIO_CLAIM_ID $ADAGIO_RUN_ID $ADAGIO_NODE" >> '${ledger}'; sleep ${seconds}`,
        ],
      },
    },
    retry: { error: { max_attempts: 10 } },
  });
  const backoff = { initial: '100ms', factor: 2, max: '1s', jitter: 0.2 };
  const flaky = (name: string, chances: string, delayed = false) => ({
    name,
    runtime: 'debug',
    metadata: {
      'adagio.arguments.debug.chances': { values: [chances] },
      'adagio.arguments.debug.sleep': { values: ['100ms'] },
    },
    retry: {
      fail: { max_attempts: 3, ...(delayed ? { backoff } : {}) },
      error: { max_attempts: 10, ...(delayed ? { backoff } : {}) },
    },
  });
  const cleanup = (name: string) => ({
    name,
    runtime: 'debug',
    metadata: { 'adagio.arguments.debug.sleep': { values: ['50ms'] } },
    retry: { error: { max_attempts: 10 } },
  });
  const shape = i % 3;
  const nodes =
    shape === 0
      ? [
          work('a', '0.3'),
          flaky('b', '0.3 fail', true),
          work('c', '0.2', '5s'),
          flaky('d', '0.1 error'),
          work('e', '0.1'),
        ]
      : shape === 1
        ? [work('a', '0.5', '5s'), work('b', '0.2'), flaky('c', '0.2 fail', true), work('d', '0.2')]
        : [flaky('a', '0.2 error', true), work('b', '0.4'), work('c', '0.1', '5s')];
  const names = nodes.map((n) => n.name);
  // Rule 14: a cleanup node runs once the sink completed, however it did (all_done);
  // shape 0 also has a failure handler below its flaky node (one_failed).
  const sink = shape === 0 ? 'e' : shape === 1 ? 'd' : 'c';
  const handlers: [string, string][] = [[sink, CLEANUP]];
  const extra: object[] = [{ ...cleanup(CLEANUP), trigger: 'all_done' }];
  if (shape === 0) {
    extra.push({ ...cleanup('onfail'), trigger: 'one_failed' });
    handlers.push(['b', 'onfail']);
  }
  const edges =
    shape === 0
      ? [
          ['a', 'b'],
          ['a', 'c'],
          ['b', 'd'],
          ['c', 'd'],
          ['d', 'e'],
        ]
      : shape === 1
        ? [
            ['a', 'c'],
            ['b', 'c'],
            ['c', 'd'],
          ]
        : names.slice(1).map((n, k) => [names[k]!, n]);
  return graphFromJson({
    nodes: [...nodes, ...extra],
    edges: [...edges, ...handlers].map(([source, destination]) => ({ source, destination })),
    deadline: '1h',
  });
}

/** API calls ride out a store disruption: retry while the answer is "unavailable". */
async function retrying<T>(fn: () => Promise<T>, forMs = 90_000): Promise<T> {
  const end = Date.now() + forMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if ((e as { code?: string }).code !== 'unavailable' || Date.now() > end) throw e;
      await sleep(250);
    }
  }
}

function parseSeconds(ttl: string): number {
  const m = /^(\d+(?:\.\d+)?)s$/.exec(ttl);
  if (!m) throw new Error(`lease TTL for chaos must be in seconds, got ${ttl}`);
  return Number(m[1]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
