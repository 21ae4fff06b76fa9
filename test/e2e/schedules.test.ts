/**
 * Exactly once per slot, end to end (rule 18): two `adagiod api` processes
 * (both fire schedules) and one `adagiod agent` on PostgreSQL and on etcd. A
 * schedule every second for ten seconds makes one run per slot, with no
 * duplicate, while one API process is killed -9 mid-way and started again.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readWorkflowFile } from '../../src/cli/workflows.js';
import { AdagioClient } from '../../src/client/index.js';
import type { RunSummary } from '../../src/model/types.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { sharedEtcd, uniqueNamespace } from '../support/etcd.js';
import { dropSchema, POSTGRES_URL, requirePostgres, uniqueSchema } from '../support/postgres.js';

const NIGHTLY = fileURLToPath(new URL('../../examples/definitions/nightly.json', import.meta.url));
const SLOTS = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scheduledRuns(client: AdagioClient): Promise<RunSummary[]> {
  const runs: RunSummary[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listRuns({ labels: { 'adagio.schedule': 'tick' }, limit: 1000, cursor });
    runs.push(...page.runs);
    cursor = page.nextCursor;
  } while (cursor);
  return runs;
}

function exactlyOncePerSlot(
  name: string,
  backendArgs: () => Promise<string[]>,
  cleanup: () => Promise<void>,
) {
  describe(`schedules on ${name}: two API processes, one killed -9`, () => {
    const daemons: RunningDaemon[] = [];
    after(async () => {
      for (const d of daemons) await d.stop('SIGKILL');
      await cleanup();
    });

    it('a schedule every second for ten seconds starts one run per slot', { timeout: 180_000 }, async () => {
      const args = await backendArgs();
      const apiA = await startDaemon(['api', ...args]);
      daemons.push(apiA);
      let apiB = await startDaemon(['api', ...args]);
      daemons.push(apiB);
      daemons.push(await startDaemon(['agent', ...args, '--agents', '8', '--grace-period', '1s']));
      const client = new AdagioClient({ address: apiA.address, timeoutMs: 60_000 });
      const wf = await readWorkflowFile(NIGHTLY);
      await client.putWorkflow(wf.name, wf.input);
      const s = await client.putSchedule('tick', {
        workflow: 'nightly',
        cron: '* * * * * *',
        params: { date: '{{schedule.time}}' },
        overlap: 'allow',
        catchup: '1m',
      });
      const first = Date.parse(s.nextSlot);
      const last = first + (SLOTS - 1) * 1000;
      // Kill B -9 in the middle of the window, bring it back before the end.
      await sleep(first + 3500 - Date.now());
      apiB.child.kill('SIGKILL');
      await apiB.exited;
      await sleep(1500);
      apiB = await startDaemon(['api', ...args]);
      daemons.push(apiB);
      await sleep(last + 1000 - Date.now());
      await client.pauseSchedule('tick');
      // Both schedulers have decided every slot up to the last one.
      for (let i = 0; i < 60 && Date.parse((await client.getSchedule('tick')).schedule.nextSlot) <= last; i++)
        await sleep(500);

      const runs = (await scheduledRuns(client)).filter((r) => Date.parse(r.labels!['adagio.slot']!) <= last);
      const slots = runs.map((r) => r.labels!['adagio.slot']!).sort();
      const expected = Array.from({ length: SLOTS }, (_, i) =>
        new Date(first + i * 1000).toISOString().replace('.000Z', 'Z'),
      );
      assert.deepEqual(slots, expected, 'one run per slot, none twice, none lost');
      const history = (await client.getSchedule('tick')).schedule.history;
      assert.ok(
        history.every((h) => h.outcome === 'started'),
        `no slot missed or skipped: ${JSON.stringify(history)}`,
      );
      // The agent runs them all.
      for (const r of runs) {
        for (let i = 0; i < 120; i++) {
          const run = await client.inspect(r.id);
          if (run.status === 'COMPLETED') {
            assert.equal(run.conclusion, 'SUCCESS', r.id);
            break;
          }
          await sleep(500);
        }
      }
    });
  });
}

let schema = '';
exactlyOncePerSlot(
  'PostgreSQL',
  async () => {
    await requirePostgres();
    schema = uniqueSchema('sched_e2e');
    return ['--backend-type', 'postgres', '--postgres-url', POSTGRES_URL, '--postgres-schema', schema];
  },
  async () => {
    if (schema) await dropSchema(schema);
  },
);

exactlyOncePerSlot(
  'etcd',
  async () => {
    const cluster = await sharedEtcd();
    return [
      '--backend-type',
      'etcd',
      '--etcd-addresses',
      cluster.endpoints.join(','),
      '--etcd-namespace',
      uniqueNamespace('sched-e2e'),
    ];
  },
  async () => {
    const cluster = await sharedEtcd();
    const hold = setInterval(() => {}, 1000);
    try {
      await cluster.destroy();
    } finally {
      clearInterval(hold);
    }
  },
);
