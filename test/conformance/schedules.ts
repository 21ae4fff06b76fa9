/**
 * Schedules (docs/design.md rule 18): definitions and their refusals, slots
 * started exactly once by racing schedulers, catch-up and missed slots,
 * backfill, pause/resume/trigger and the overlap policies. Schedulers run on a
 * ManualClock placed relative to the schedule's first slot (a put reads the
 * store's clock), so no test waits for a cron.
 */
import assert from 'node:assert/strict';
import { describe } from 'node:test';
import { ManualClock } from '../../src/model/ids.js';
import type { ScheduleInput } from '../../src/model/schedules.js';
import type { Run, RunSummary } from '../../src/model/types.js';
import { backfillSchedule, triggerSchedule } from '../../src/scheduler/actions.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { graph, node } from './fixtures.js';
import type { ConformanceTest, Harness } from './harness.js';

const MIN = 60_000;
const HOUR = 60 * MIN;

async function withWorkflow(h: Harness): Promise<void> {
  await h.repo.putWorkflow('nightly', {
    spec: graph([node('extract', { metadata: { day: ['{{params.date}}'] } })]),
    params: [{ name: 'date', required: true }],
  });
}

function every(cron: string, extra: Partial<ScheduleInput> = {}): ScheduleInput {
  return { workflow: 'nightly', cron, params: { date: '{{schedule.time}}' }, catchup: '1h', ...extra };
}

/** A scheduler whose clock stands `offsetMs` after the schedule's first slot. */
function schedulerAt(h: Harness, firstSlot: string, offsetMs: number): { s: Scheduler; clock: ManualClock } {
  const clock = new ManualClock(Date.parse(firstSlot) + offsetMs);
  return { s: new Scheduler(h.repo, { clock }), clock };
}

/** The schedule's runs, oldest slot first. */
async function runsOf(h: Harness, name: string): Promise<RunSummary[]> {
  const runs: RunSummary[] = [];
  let cursor: string | undefined;
  do {
    const page = await h.repo.listRuns({ labels: { 'adagio.schedule': name }, limit: 1000, cursor });
    runs.push(...page.runs);
    cursor = page.nextCursor;
  } while (cursor);
  return runs.sort((a, b) => (a.labels!['adagio.slot']! < b.labels!['adagio.slot']! ? -1 : 1));
}

const slots = (runs: RunSummary[]) => runs.map((r) => r.labels!['adagio.slot']);
const plus = (slot: string, ms: number) =>
  new Date(Date.parse(slot) + ms).toISOString().replace('.000Z', 'Z');

/** A test that drives Scheduler, whose steps need advanceSchedule (the store's compare-and-set). */
function sched(test: ConformanceTest, name: string, body: (h: Harness) => Promise<void>): void {
  test(name, body, { requires: 'scheduler' });
}

async function refused(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error & { code?: string }) => {
    assert.equal(e.code, code, `code of: ${e.message}`);
    assert.match(e.message, message);
    return true;
  });
}

export function schedulesSpec(test: ConformanceTest): void {
  describe('schedules (rule 18)', () => {
    test('a put stores the schedule with its next slot; a put of the same timing keeps it; get, list, pause, resume, delete', async (h) => {
      await withWorkflow(h);
      const before = Date.now();
      const s = await h.repo.putSchedule('hourly', every('0 * * * *', { timezone: 'Europe/Berlin' }));
      assert.equal(s.name, 'hourly');
      assert.equal(s.overlap, 'skip');
      assert.equal(s.paused, false);
      assert.ok(Date.parse(s.nextSlot) > before && Date.parse(s.nextSlot) <= before + HOUR, s.nextSlot);
      assert.match(s.nextSlot, /^\d{4}-\d\d-\d\dT\d\d:00:00Z$/);
      const again = await h.repo.putSchedule(
        'hourly',
        every('0 * * * *', { timezone: 'Europe/Berlin', overlap: 'allow' }),
      );
      assert.equal(again.nextSlot, s.nextSlot);
      assert.equal(again.overlap, 'allow');
      assert.deepEqual(await h.repo.getSchedule('hourly'), again);
      assert.deepEqual(
        (await h.repo.listSchedules()).map((x) => x.name),
        ['hourly'],
      );
      assert.equal((await h.repo.pauseSchedule('hourly', true)).paused, true);
      assert.equal((await h.repo.getSchedule('hourly')).paused, true);
      assert.equal((await h.repo.pauseSchedule('hourly', false)).paused, false);
      await refused(h.repo.deleteWorkflow('nightly'), 'conflict', /schedule "hourly"/);
      await h.repo.deleteSchedule('hourly');
      await refused(h.repo.getSchedule('hourly'), 'not_found', /schedule "hourly"/);
      await refused(h.repo.deleteSchedule('hourly'), 'not_found', /hourly/);
      await refused(h.repo.pauseSchedule('hourly', true), 'not_found', /hourly/);
      await h.repo.deleteWorkflow('nightly');
    });

    test('a schedule put racing the delete of its workflow: never a schedule of a deleted workflow', async (h) => {
      for (let i = 0; i < 8; i++) {
        const wf = `wf-${i}`;
        await h.repo.putWorkflow(wf, { spec: graph(['x']) });
        const [put, del] = await Promise.allSettled([
          h.repo.putSchedule(`s-${i}`, { workflow: wf, cron: '0 2 * * *' }),
          h.repo.deleteWorkflow(wf),
        ]);
        const workflowGone = del.status === 'fulfilled';
        assert.notEqual(put.status === 'fulfilled', workflowGone, `round ${i}: exactly one wins`);
        if (workflowGone) assert.match(String((put as PromiseRejectedResult).reason), /does not exist/);
        else assert.match(String((del as PromiseRejectedResult).reason), /used by schedule/);
      }
    });

    test('bad input is refused naming it, and nothing is stored', async (h) => {
      await withWorkflow(h);
      await refused(
        h.repo.putSchedule('s', every('61 * * * *')),
        'invalid_argument',
        /cron "61 \* \* \* \*"/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 0 2 * * * 2026')),
        'invalid_argument',
        /has 7 fields: write 5 .*, or 6 with seconds first/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 2 * * *', { timezone: 'Mars/Base' })),
        'invalid_argument',
        /timezone "Mars\/Base"/,
      );
      await refused(
        h.repo.putSchedule('s', { ...every('0 2 * * *'), workflow: 'nope' }),
        'invalid_argument',
        /workflow "nope" does not exist/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 2 * * *', { overlap: 'sometimes' as never })),
        'invalid_argument',
        /overlap must be one of skip, allow, buffer_one, cancel_previous, got "sometimes"/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 2 * * *', { catchup: 'soon' })),
        'invalid_argument',
        /catchup/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 2 * * *', { params: {} })),
        'invalid_argument',
        /missing required param "date"/,
      );
      await refused(
        h.repo.putSchedule('s', every('0 2 * * *', { params: { date: 'x', other: 'y' } })),
        'invalid_argument',
        /unknown param "other"/,
      );
      await refused(h.repo.putSchedule('bad name!', every('0 2 * * *')), 'invalid_argument', /schedule name/);
      assert.deepEqual(await h.repo.listSchedules(), []);
    });

    sched(test, 'three schedulers racing on one store start each due slot exactly once', async (h) => {
      await withWorkflow(h);
      const s = await h.repo.putSchedule('minutely', every('* * * * *', { overlap: 'allow' }));
      const schedulers = [0, 1, 2].map(() => schedulerAt(h, s.nextSlot, 2 * MIN + 30_000).s);
      await Promise.all(schedulers.map((x) => x.tick()));
      await Promise.all(schedulers.map((x) => x.tick()));
      const runs = await runsOf(h, 'minutely');
      assert.deepEqual(slots(runs), [s.nextSlot, plus(s.nextSlot, MIN), plus(s.nextSlot, 2 * MIN)]);
      const after = await h.repo.getSchedule('minutely');
      assert.equal(after.nextSlot, plus(s.nextSlot, 3 * MIN));
      assert.deepEqual(
        after.history.map((r) => [r.slot, r.outcome, r.runId]),
        runs.map((r) => [r.labels!['adagio.slot'], 'started', r.id]).reverse(),
      );
      // The run got the slot's time as its param.
      const run: Run = await h.repo.inspect(runs[0]!.id);
      assert.deepEqual(run.params, { date: s.nextSlot });
      assert.equal(run.workflow, 'nightly');
    });

    sched(
      test,
      'after downtime, slots within catchup start and older ones are recorded missed',
      async (h) => {
        await withWorkflow(h);
        const s = await h.repo.putSchedule(
          'hourly',
          every('0 * * * *', { timezone: 'UTC', catchup: '90m', overlap: 'allow' }),
        );
        const { s: scheduler } = schedulerAt(h, s.nextSlot, 4 * HOUR + 30 * MIN);
        await scheduler.tick();
        assert.deepEqual(slots(await runsOf(h, 'hourly')), [
          plus(s.nextSlot, 3 * HOUR),
          plus(s.nextSlot, 4 * HOUR),
        ]);
        const after = await h.repo.getSchedule('hourly');
        assert.equal(after.nextSlot, plus(s.nextSlot, 5 * HOUR));
        assert.deepEqual(
          after.history.filter((r) => r.outcome === 'missed').map((r) => r.slot),
          [plus(s.nextSlot, 2 * HOUR), plus(s.nextSlot, HOUR), s.nextSlot],
        );
      },
    );

    sched(
      test,
      'a paused schedule starts nothing; resumed, it goes on (catch-up applies); trigger starts a run now',
      async (h) => {
        await withWorkflow(h);
        const s = await h.repo.putSchedule(
          'm',
          every('* * * * *', { paused: true, overlap: 'allow', catchup: '0' }),
        );
        const { s: scheduler, clock } = schedulerAt(h, s.nextSlot, 30_000);
        await scheduler.tick();
        assert.deepEqual(await runsOf(h, 'm'), []);
        await h.repo.pauseSchedule('m', false);
        clock.advance(2 * MIN);
        await scheduler.tick();
        // Catch-up 0: the slots that passed while paused are missed, but for the one late by less than the grace.
        const after = await h.repo.getSchedule('m');
        assert.deepEqual(
          after.history.map((r) => [r.slot, r.outcome]),
          [
            [plus(s.nextSlot, 2 * MIN), 'started'],
            [plus(s.nextSlot, MIN), 'missed'],
            [s.nextSlot, 'missed'],
          ],
        );
        const triggered = await triggerSchedule(h.repo, 'm', Date.parse(s.nextSlot) + 10 * MIN);
        assert.equal(triggered.labels?.['adagio.schedule'], 'm');
        assert.equal(triggered.labels?.['adagio.trigger'], 'manual');
        assert.equal(triggered.labels?.['adagio.slot'], plus(s.nextSlot, 10 * MIN));
        const again = await triggerSchedule(h.repo, 'm', Date.parse(s.nextSlot) + 10 * MIN + 500);
        assert.equal(again.id, triggered.id, 'two triggers within one second are one run');
      },
    );

    test('backfill starts every slot in the range once, and refuses a reversed or too long range', async (h) => {
      await withWorkflow(h);
      const s = await h.repo.putSchedule('hourly', every('0 * * * *'));
      const from = plus(s.nextSlot, -5 * HOUR);
      const to = plus(s.nextSlot, -3 * HOUR);
      // Now: the schedule's next slot is the first after it.
      const now = Date.parse(s.nextSlot) - 1;
      const runs = await backfillSchedule(h.repo, 'hourly', from, to, now);
      assert.deepEqual(
        runs.map((r) => r.labels?.['adagio.slot']),
        [from, plus(from, HOUR), to],
      );
      const again = await backfillSchedule(h.repo, 'hourly', plus(from, -30 * MIN), to, now);
      assert.deepEqual(
        again.map((r) => r.id),
        runs.map((r) => r.id),
        'a slot keeps its run',
      );
      assert.equal((await runsOf(h, 'hourly')).length, 3);
      await refused(
        backfillSchedule(h.repo, 'hourly', to, from, now),
        'invalid_argument',
        /from .* is after to/,
      );
      await refused(
        backfillSchedule(h.repo, 'hourly', 'yesterday', to, now),
        'invalid_argument',
        /"yesterday" is not an RFC 3339/,
      );
      await refused(
        backfillSchedule(h.repo, 'hourly', plus(from, -1000 * HOUR), to, now),
        'invalid_argument',
        /more than 500 slots/,
      );
      await refused(
        backfillSchedule(h.repo, 'hourly', from, s.nextSlot, now),
        'invalid_argument',
        /is in the future/,
      );
      assert.equal((await runsOf(h, 'hourly')).length, 3, 'a refused backfill starts nothing');
    });

    describe('overlap policies (an earlier run still going)', () => {
      /** The first slot's run is started (and stays WAITING: no agent), then the clock is at `offset`. */
      async function busy(h: Harness, overlap: ScheduleInput['overlap']) {
        await withWorkflow(h);
        const s = await h.repo.putSchedule('m', every('* * * * *', { overlap }));
        const at = schedulerAt(h, s.nextSlot, 30_000);
        await at.s.tick();
        assert.deepEqual(slots(await runsOf(h, 'm')), [s.nextSlot]);
        return { first: s.nextSlot, ...at };
      }

      sched(test, 'skip: the slot is skipped', async (h) => {
        const { first, s, clock } = await busy(h, 'skip');
        clock.advance(MIN);
        await s.tick();
        assert.deepEqual(slots(await runsOf(h, 'm')), [first]);
        assert.deepEqual((await h.repo.getSchedule('m')).history[0], {
          slot: plus(first, MIN),
          outcome: 'skipped',
        });
      });

      sched(test, 'allow: the slot starts anyway', async (h) => {
        const { first, s, clock } = await busy(h, 'allow');
        clock.advance(MIN);
        await s.tick();
        assert.deepEqual(slots(await runsOf(h, 'm')), [first, plus(first, MIN)]);
      });

      sched(test, 'cancel_previous: the earlier run is cancelled, then the slot starts', async (h) => {
        const { first, s, clock } = await busy(h, 'cancel_previous');
        clock.advance(MIN);
        await s.tick();
        const runs = await runsOf(h, 'm');
        assert.deepEqual(slots(runs), [first, plus(first, MIN)]);
        assert.equal(runs[0]!.conclusion, 'CANCELLED');
        assert.notEqual(runs[1]!.status, 'COMPLETED');
      });

      sched(
        test,
        'buffer_one: the latest due slot waits for the earlier run, older waiting ones are skipped',
        async (h) => {
          const { first, s, clock } = await busy(h, 'buffer_one');
          clock.advance(MIN);
          await s.tick();
          assert.equal((await h.repo.getSchedule('m')).nextSlot, plus(first, MIN), 'waiting');
          clock.advance(MIN);
          await s.tick();
          const waiting = await h.repo.getSchedule('m');
          assert.equal(waiting.nextSlot, plus(first, 2 * MIN));
          assert.deepEqual(waiting.history[0], { slot: plus(first, MIN), outcome: 'skipped' });
          await h.repo.cancel((await runsOf(h, 'm'))[0]!.id);
          await s.tick();
          assert.deepEqual(slots(await runsOf(h, 'm')), [first, plus(first, 2 * MIN)]);
        },
      );
    });
  });
}
