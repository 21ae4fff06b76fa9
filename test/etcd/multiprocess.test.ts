/**
 * Horizontal scale on etcd with real processes: one `adagiod api` and three
 * `adagiod agent` processes share one etcd. 200 runs of the 7-node DAG
 * (examples/workflows/seven-node.json's shape) complete while one agent is
 * killed -9 holding claims: its nodes are orphaned and recovered elsewhere
 * (an ERROR attempt, then a retry), and every accepted attempt was executed
 * exactly once (each execution appends its claim id to a ledger file).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { GraphSpec } from '../../src/model/types.js';
import { REPO_ROOT } from '../support/daemon.js';
import { EtcdCluster } from '../support/etcd.js';
import { allComplete, deploy, retrying } from './daemons.js';

const RUNS = 200;
/** Runs whose d and f are slow, so the victim is caught holding them. */
const SLOW_RUNS = 10;

/**
 * The example's nodes and edges; every node appends its claim to the ledger.
 * In the first runs d and f take four seconds, so the killed agent is surely caught mid-node.
 */
function ledgerDag(ledger: string, slowNodes: boolean): GraphSpec {
  const example = JSON.parse(
    readFileSync(join(REPO_ROOT, 'examples/workflows/seven-node.json'), 'utf8'),
  ) as GraphSpec;
  const slow: Record<string, string> = slowNodes ? { d: 'sleep 4', f: 'sleep 4' } : {};
  return {
    nodes: example.nodes.map((n) => ({
      name: n.name,
      runtime: 'exec',
      metadata: {
        'adagio.arguments.exec.command': ['sh'],
        'adagio.arguments.exec.args': [
          '-c',
          `echo "$ADAGIO_CLAIM_ID $ADAGIO_RUN_ID $ADAGIO_NODE" >> '${ledger}'; ${slow[n.name] ?? 'true'}`,
        ],
      },
      retry: { error: { maxAttempts: 3 } },
    })),
    edges: example.edges,
  };
}

describe('etcd: api + 3 agent processes', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'adagio-etcd-mp-'));
  let cluster: EtcdCluster | undefined;
  after(async () => {
    await cluster?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('200 runs of the 7-node DAG complete; an agent killed -9 holding claims loses nothing', async () => {
    cluster = await EtcdCluster.start(1);
    const ledger = join(dir, 'ledger');
    writeFileSync(ledger, '');
    const d = await deploy(cluster, 3, ['--agents', '4', '--lease-ttl', '2s', '--grace-period', '1s']);
    try {
      const ids: string[] = [];
      const starting = (async () => {
        for (let i = 0; i < RUNS; i++)
          ids.push((await retrying(() => d.client.start(ledgerDag(ledger, i < SLOW_RUNS)))).id);
      })();
      // Kill an agent once it holds claims (its slots' agent ids carry its pid).
      const victim = d.agents[0]!;
      const mark = `-${victim.child.pid}-`;
      let held: { runId: string; node: string; claim: string }[] = [];
      const deadline = Date.now() + 120_000;
      while (!held.some((h) => h.node === 'd' || h.node === 'f')) {
        assert.ok(Date.now() < deadline, 'the victim agent claimed a slow node');
        held = [];
        // Kill as soon as one slow claim is seen: its node sleeps for seconds, far longer than this scan.
        for (const id of ids.slice(0, SLOW_RUNS)) {
          const run = await d.client.inspect(id);
          for (const n of run.nodes)
            if (n.status === 'RUNNING' && n.claim?.agentId.includes(mark))
              held.push({ runId: id, node: n.spec.name, claim: n.claim.id });
          if (held.some((h) => h.node === 'd' || h.node === 'f')) break;
        }
        if (held.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      victim.child.kill('SIGKILL');
      await victim.exited;
      const killedAt = Date.now();
      await starting;

      const runs = await allComplete(d.client, ids, 240_000);
      assert.equal(runs.length, RUNS);
      assert.ok(
        runs.every((r) => r.conclusion === 'SUCCESS'),
        'every run succeeded',
      );
      // The claims held at the kill: orphaned, recorded as ERROR by another agent, then run again.
      let recovered = 0;
      for (const h of held) {
        const n = runs.find((r) => r.id === h.runId)!.nodes.find((x) => x.spec.name === h.node)!;
        assert.equal(n.attempts.at(-1)?.conclusion, 'SUCCESS');
        if (n.attempts.some((a) => a.claimId === h.claim)) continue; // it finished just before the kill
        // The recovering agent's ERROR attempt names the lapsed claim.
        const error = n.attempts.find(
          (a) => a.conclusion === 'ERROR' && Buffer.from(a.output).toString().includes(h.claim),
        );
        assert.ok(error, `${h.runId}/${h.node}: orphan recorded as ERROR`);
        recovered++;
      }
      assert.ok(recovered >= 1, 'a claim of the killed agent was orphaned and recovered');
      // No finish from a dead claim accepted after the kill: the dead agent's attempts ended before it died.
      for (const r of runs)
        for (const n of r.nodes)
          for (const a of n.attempts)
            if (a.agentId.includes(mark) && a.conclusion === 'SUCCESS')
              assert.ok(
                Date.parse(a.finishedAt) <= killedAt + 1_000,
                `${r.id}/${n.spec.name} after the kill`,
              );
      // Every accepted attempt was executed exactly once, under its own claim.
      const executed = new Map<string, number>();
      for (const line of readFileSync(ledger, 'utf8').split('\n'))
        if (line) executed.set(line.split(' ')[0]!, (executed.get(line.split(' ')[0]!) ?? 0) + 1);
      for (const [claim, count] of executed) assert.equal(count, 1, `claim ${claim} executed ${count} times`);
      let accepted = 0;
      for (const r of runs)
        for (const n of r.nodes)
          for (const a of n.attempts)
            if (a.conclusion === 'SUCCESS') {
              accepted++;
              assert.equal(executed.get(a.claimId), 1, `${r.id}/${n.spec.name}: its claim executed once`);
            }
      assert.equal(accepted, RUNS * 7);
      for (const p of [d.api, ...d.agents.slice(1)]) assert.equal(p.child.exitCode, null, 'still running');
    } finally {
      await d.stop();
    }
  });
});
