/** The chaos suite, shortened for `npm test` (the full one is `npm run chaos`): one test per backend file. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { type ChaosBackend, formatReport, runChaos } from './harness.js';

export function shortChaos(title: string, make: () => Promise<ChaosBackend>, seed: number): void {
  it(`chaos on ${title}; nothing lost, nothing doubled`, { timeout: 600_000 }, async () => {
    const backend = await make();
    try {
      const r = await runChaos(backend, { runs: 40, kills: 5, storeDisruptions: 1, seed });
      console.log(formatReport(r));
      assert.equal(r.lost, 0, 'every run and node completed');
      assert.equal(r.doubleFinishes, 0, 'no node has two SUCCESS attempts');
      assert.equal(r.cleanupsNotRun, 0, 'every all_done cleanup node ran');
      assert.equal(r.lapsedAccepted, 0, 'no attempt recorded from a lapsed claim');
      assert.equal(r.unexecutedSuccesses, 0, 'every recorded success ran exactly once under its claim');
      assert.ok(r.statsMatch, 'stats agree with the runs');
      assert.equal(r.runsTimedOut, 0, 'no run hit its far-off deadline');
      assert.equal(r.kills + r.pauses, 5);
      assert.equal(r.storeDisruptions.length, 1);
    } finally {
      await backend.teardown();
    }
  });
}
