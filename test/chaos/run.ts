/**
 * `npm run chaos [-- postgres|etcd|dynamodb ...] [--runs N] [--kills N] [--seed N] [--claim-ahead N]`:
 * the full chaos suite (default 300 runs and 30 agent disruptions per
 * backend, the store disrupted twice, each agent process claiming 4 ahead),
 * printing its figures. Exits 1 when any promise broke.
 */
import { parseArgs } from 'node:util';
import { chaosDynamoDb, chaosEtcd, chaosPostgres } from './backends.js';
import { type ChaosBackend, formatReport, runChaos } from './harness.js';

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        runs: { type: 'string', default: '300' },
        kills: { type: 'string', default: '30' },
        'store-disruptions': { type: 'string', default: '2' },
        seed: { type: 'string', default: '1' },
        'claim-ahead': { type: 'string', default: '4' },
      },
    });
  } catch (e) {
    console.error(`chaos: ${(e as Error).message}`);
    process.exit(2);
  }
}
const { values, positionals } = parse();
/** A whole number option, at least `min`; otherwise the runner stops saying which option is wrong. */
function whole(name: keyof typeof values, min: number): number {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < min) {
    console.error(`chaos: --${name} must be a whole number >= ${min}, got ${values[name]}`);
    process.exit(2);
  }
  return n;
}
// Checked before any store starts.
const numbers = {
  runs: whole('runs', 1),
  kills: whole('kills', 0),
  storeDisruptions: whole('store-disruptions', 0),
  seed: whole('seed', 0),
  claimAhead: whole('claim-ahead', 0),
};
const backends: Record<string, () => Promise<ChaosBackend>> = {
  postgres: chaosPostgres,
  etcd: chaosEtcd,
  dynamodb: chaosDynamoDb,
};
const wanted = positionals.length > 0 ? positionals : Object.keys(backends);
for (const name of wanted)
  if (!backends[name]) {
    console.error(`chaos: unknown backend ${name}; choose from ${Object.keys(backends).join(', ')}`);
    process.exit(2);
  }
let broken = false;
for (const name of wanted) {
  const backend = await backends[name]!();
  try {
    const r = await runChaos(backend, {
      ...numbers,
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
