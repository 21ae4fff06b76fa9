/**
 * The benchmark commands that take arguments run end to end at a tiny size
 * against the real stores (PostgreSQL, Redis), and print every table they
 * promise. No figure is asserted: speeds belong to `npm run bench`, not to tests.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { requireRedis } from '../../bench/stores.js';
import { REPO_ROOT } from '../support/daemon.js';
import { requirePostgres } from '../support/postgres.js';

/** Runs `npm run bench -- ...args` as a user would (its own process), resolving with its exit code and stdout. */
function bench(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, out, err }));
  });
}

describe('bench commands', () => {
  it('peers: every contender on every workload it has, the ratios and the targets', {
    timeout: 180_000,
  }, async () => {
    await requirePostgres();
    await requireRedis();
    const r = await bench([
      'peers',
      '--jobs',
      '100',
      '--rounds',
      '1',
      '--latency-jobs',
      '30',
      '--dag-runs',
      '5',
    ]);
    assert.equal(r.code, 0, r.err);
    for (const title of [
      '100 independent jobs, backlog drained',
      'add → start at 300/s',
      'runs of the 7-node DAG',
      'Adagio PostgreSQL against the peers',
      'What bounds it: the rows floor',
      'Done when',
    ])
      assert.match(r.out, new RegExp(`## .*${title}`), `missing table "${title}"`);
    for (const contender of [
      /\| graphile-worker [\d.]+ default /,
      /\| graphile-worker [\d.]+ (fast \(localQueue 500|batch jobs \(500 per row)/,
      /\| BullMQ 6\.7\.0 /,
      /\| Adagio memory /,
      /\| Adagio PostgreSQL, 1 run × 100 nodes /,
      /\| Adagio PostgreSQL claim-ahead 500 /,
      /\| Adagio PostgreSQL claim-ahead 500, 1 run × 100 nodes /,
      /\| rows floor: /,
    ])
      assert.match(r.out, contender);
    assert.match(r.out, /\| (met|missed) +\|/);
  });

  it('width: the per-node cost of one wide run against as many one-node runs', {
    timeout: 60_000,
  }, async () => {
    const r = await bench(['width', 'memory', '--size', '200']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /\| memory +\| 200 +\|/);
  });

  it('width: refuses an unknown backend', async () => {
    const r = await bench(['width', 'mysql']);
    assert.equal(r.code, 1);
    assert.match(r.err, /unknown backend mysql/);
  });
});
