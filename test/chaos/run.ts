/**
 * `npm run chaos [-- postgres|etcd|dynamodb ...] [--runs N] [--kills N] [--seed N] [--claim-ahead N]`:
 * the full chaos suite (default 300 runs and 30 agent disruptions per
 * backend, the store disrupted twice, each agent process claiming 4 ahead),
 * printing its figures. Exits 1 when any promise broke.
 */
import { parseArgs } from 'node:util';
import { chaosDynamoDb, chaosEtcd, chaosPostgres } from './backends.js';
import { type ChaosBackend, formatReport, runChaos } from './harness.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    runs: { type: 'string', default: '300' },
    kills: { type: 'string', default: '30' },
    'store-disruptions': { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    'claim-ahead': { type: 'string', default: '4' },
  },
});
const backends: Record<string, () => Promise<ChaosBackend>> = {
  postgres: chaosPostgres,
  etcd: chaosEtcd,
  dynamodb: chaosDynamoDb,
};
const wanted = positionals.length > 0 ? positionals : Object.keys(backends);
let broken = false;
for (const name of wanted) {
  const make = backends[name];
  if (!make) {
    console.error(`chaos: unknown backend ${name}; choose from ${Object.keys(backends).join(', ')}`);
    process.exit(2);
  }
  const backend = await make();
  try {
    const r = await runChaos(backend, {
      runs: Number(values.runs),
      kills: Number(values.kills),
      storeDisruptions: Number(values['store-disruptions']),
      seed: Number(values.seed),
      claimAhead: Number(values['claim-ahead']),
      log: (line) => console.error(`  ${new Date().toISOString().slice(11, 19)} ${line}`),
    });
    console.log(formatReport(r));
    if (
      r.lost ||
      r.doubleFinishes ||
      r.cleanupsNotRun ||
      r.runsTimedOut ||
      r.lapsedAccepted ||
      r.unexecutedSuccesses ||
      !r.statsMatch
    )
      broken = true;
  } finally {
    await backend.teardown();
  }
}
process.exit(broken ? 1 : 0);
