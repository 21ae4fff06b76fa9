/**
 * The pure functions of rule 18 (src/model/schedules.ts): cron slots in time
 * zones, the plan a scheduler follows (catch-up, grace, overlap), backfill
 * ranges, and the compare of a step. Tested once without a store.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyStep,
  backfillSlots,
  planSchedule,
  type Schedule,
  scheduleAfterPut,
  slotParams,
  slotsAfter,
  validateSchedule,
} from '../src/model/schedules.js';
import { InvalidArgumentError } from '../src/protocol/errors.js';

const T0 = Date.parse('2026-03-01T00:00:00Z');

function schedule(extra: Partial<Schedule> = {}): Schedule {
  return {
    ...scheduleAfterPut(undefined, 's', { workflow: 'w', cron: '0 * * * *', catchup: '1h' }, T0 - 1),
    ...extra,
  };
}

describe('schedule rules (rule 18)', () => {
  it('slots follow the time zone across a DST change (02:00 Berlin: 01:00 UTC; on the day 02:00 does not exist, 03:00 CEST; then 00:00 UTC)', () => {
    const s = { cron: '0 2 * * *', timezone: 'Europe/Berlin' };
    assert.deepEqual(slotsAfter(s, Date.parse('2026-03-28T00:00:00Z'), 3), [
      '2026-03-28T01:00:00Z',
      '2026-03-29T01:00:00Z',
      '2026-03-30T00:00:00Z',
    ]);
    assert.deepEqual(slotsAfter({ cron: '*/20 * * * * *', timezone: 'UTC' }, T0, 2), [
      '2026-03-01T00:00:20Z',
      '2026-03-01T00:00:40Z',
    ]);
  });

  it('a list, range or step in the hour the spring change skips fires once at the change, as a single value does', () => {
    const from = Date.parse('2026-03-28T23:30:00Z'); // 00:30 CET on the day of the change
    const berlin = (cron: string, n = 2) => slotsAfter({ cron, timezone: 'Europe/Berlin' }, from, n);
    // 02:00 and 02:30 (local) do not exist that day: one slot at 03:00 CEST (01:00 UTC), then the next day's.
    assert.deepEqual(berlin('0,30 2 * * *', 3), [
      '2026-03-29T01:00:00Z',
      '2026-03-30T00:00:00Z',
      '2026-03-30T00:30:00Z',
    ]);
    assert.deepEqual(berlin('*/15 2 * * *'), ['2026-03-29T01:00:00Z', '2026-03-30T00:00:00Z']);
    assert.deepEqual(berlin('15-45/15 2 * * *'), ['2026-03-29T01:00:00Z', '2026-03-30T00:15:00Z']);
    assert.deepEqual(berlin('0 2,14 * * *'), ['2026-03-29T01:00:00Z', '2026-03-29T12:00:00Z']);
    // Every two hours: 00:00 CET, then 02:00 (skipped: 03:00 CEST), 04:00 CEST.
    assert.deepEqual(berlin('0 */2 * * *'), ['2026-03-29T01:00:00Z', '2026-03-29T02:00:00Z']);
    // A single value, as before; and a cron that matches nothing in the gap is untouched.
    assert.deepEqual(berlin('0 2 * * *'), ['2026-03-29T01:00:00Z', '2026-03-30T00:00:00Z']);
    assert.deepEqual(berlin('0 5 * * *'), ['2026-03-29T03:00:00Z', '2026-03-30T03:00:00Z']);
  });

  it('a put starts at the first slot after now; the same timing keeps the place, a new cron starts over', () => {
    const s = schedule();
    assert.equal(s.nextSlot, '2026-03-01T00:00:00Z');
    const moved = { ...s, nextSlot: '2026-03-01T05:00:00Z' };
    const same = scheduleAfterPut(
      moved,
      's',
      { workflow: 'w', cron: '0 * * * *', overlap: 'allow' },
      T0 + 9e6,
    );
    assert.equal(same.nextSlot, '2026-03-01T05:00:00Z');
    assert.equal(same.overlap, 'allow');
    const other = scheduleAfterPut(moved, 's', { workflow: 'w', cron: '30 * * * *' }, T0);
    assert.equal(other.nextSlot, '2026-03-01T00:30:00Z');
  });

  it('plans: idle before the slot; start when due; missed beyond catch-up, in bulk; a late tick within the grace starts', () => {
    const s = schedule();
    assert.deepEqual(planSchedule(s, T0 - 1, false), { kind: 'idle' });
    assert.deepEqual(planSchedule({ ...s, paused: true }, T0 + 1, false), { kind: 'idle' });
    const start = planSchedule(s, T0 + 5, false);
    assert.equal(start.kind, 'start');
    const missed = planSchedule(s, T0 + 3.5 * 3_600_000, false);
    assert.equal(missed.kind, 'missed');
    if (missed.kind === 'missed') {
      assert.deepEqual(
        missed.step.records.map((r) => r.slot),
        ['2026-03-01T00:00:00Z', '2026-03-01T01:00:00Z', '2026-03-01T02:00:00Z'],
      );
      assert.equal(missed.step.to, '2026-03-01T03:00:00Z');
    }
    const noCatchup = { ...s, catchup: '0' };
    assert.equal(planSchedule(noCatchup, T0 + 20_000, false).kind, 'start', 'late by less than the grace');
    assert.equal(planSchedule(noCatchup, T0 + 40_000, false).kind, 'missed');
  });

  it('overlap while an earlier run is busy: skip, allow, cancel_previous, buffer_one waits only for the latest due slot', () => {
    const now = T0 + 10;
    assert.equal(planSchedule(schedule({ overlap: 'skip' }), now, true).kind, 'skip');
    assert.deepEqual(planSchedule(schedule({ overlap: 'allow' }), now, true), {
      kind: 'start',
      slot: '2026-03-01T00:00:00Z',
      cancelPrevious: false,
      step: {
        from: '2026-03-01T00:00:00Z',
        to: '2026-03-01T01:00:00Z',
        records: [{ slot: '2026-03-01T00:00:00Z', outcome: 'started' }],
      },
    });
    const cancel = planSchedule(schedule({ overlap: 'cancel_previous' }), now, true);
    assert.equal(cancel.kind === 'start' && cancel.cancelPrevious, true);
    assert.deepEqual(planSchedule(schedule({ overlap: 'buffer_one' }), now, true), {
      kind: 'wait',
      slot: '2026-03-01T00:00:00Z',
    });
    const buffered = schedule({ overlap: 'buffer_one', catchup: '2h' });
    assert.equal(
      planSchedule(buffered, T0 + 3_600_000 + 10, true).kind,
      'skip',
      'a later slot is due: it waits instead',
    );
    // Held for an earlier run (buffer_one), a slot is late from that run's end: the default 30 s grace.
    const held = schedule({ overlap: 'buffer_one', catchup: '0' });
    const late = T0 + 2 * 60_000;
    assert.equal(planSchedule(held, late, false).kind, 'missed', 'late, held by nothing: missed');
    assert.equal(planSchedule(held, late, true, late).kind, 'wait', 'still held');
    assert.equal(planSchedule(held, late, false, late - 1_000).kind, 'start', 'the run ended a second ago');
    assert.equal(
      planSchedule(held, late, false, late - 60_000).kind,
      'missed',
      'ended longer ago than the grace',
    );
    assert.equal(
      planSchedule(schedule({ overlap: 'skip', catchup: '0' }), late, false, late).kind,
      'missed',
      'only buffer_one holds slots',
    );
  });

  it('a step applies only from the slot it read; history is newest first and bounded', () => {
    const s = schedule();
    const step = {
      from: s.nextSlot,
      to: '2026-03-01T01:00:00Z',
      records: [{ slot: s.nextSlot, outcome: 'started' as const }],
    };
    const next = applyStep(s, step, T0);
    assert.equal(next?.nextSlot, '2026-03-01T01:00:00Z');
    assert.equal(applyStep(next!, step, T0), undefined, 'another scheduler took it');
    let h: Schedule = s;
    for (let i = 0; i < 60; i++)
      h = applyStep(
        h,
        { from: h.nextSlot, to: `x${i}`, records: [{ slot: h.nextSlot, outcome: 'missed' }] },
        T0,
      )!;
    assert.equal(h.history.length, 50);
    assert.equal(h.history[0]!.slot, 'x58');
  });

  it('backfill: inclusive range, refuses reversed, malformed, future and too long ranges', () => {
    const s = { cron: '0 0 * * *', timezone: 'UTC' };
    const now = Date.parse('2026-06-01T00:00:00Z');
    assert.deepEqual(backfillSlots(s, '2026-01-01T00:00:00Z', '2026-01-03T00:00:00Z', now), [
      '2026-01-01T00:00:00Z',
      '2026-01-02T00:00:00Z',
      '2026-01-03T00:00:00Z',
    ]);
    assert.deepEqual(
      backfillSlots(s, '2026-01-01T01:00:00+02:00', '2026-01-01T23:00:00.5-01:00', now),
      ['2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'],
      'offsets and fractions',
    );
    assert.throws(() => backfillSlots(s, '2026-01-03T00:00:00Z', '2026-01-01T00:00:00Z', now), /is after to/);
    // Date.parse takes each of these; none is RFC 3339 (a bare number, a date in words, a time without offset).
    for (const bad of ['soon', '1', 'Jan 2 2026', '2026-01-01T00:00:00', '2026-01-01'])
      assert.throws(
        () => backfillSlots(s, bad, '2026-01-02T00:00:00Z', now),
        (e: Error) =>
          e instanceof InvalidArgumentError &&
          e.message.includes(`${JSON.stringify(bad)} is not an RFC 3339 time`),
        bad,
      );
    assert.throws(
      () => backfillSlots(s, '2026-05-30T00:00:00Z', '2026-06-02T00:00:00Z', now),
      /backfill to 2026-06-02T00:00:00Z is in the future/,
    );
    assert.throws(
      () => backfillSlots(s, '2020-01-01T00:00:00Z', '2026-01-01T00:00:00Z', now),
      /more than 500 slots/,
    );
  });

  it('validation names each bad field; {{schedule.time}} becomes the slot', () => {
    assert.deepEqual(validateSchedule('ok', { workflow: 'w', cron: '0 2 * * *' }), []);
    const problems = validateSchedule('ok', {
      workflow: 'w',
      cron: '0 25 * * *',
      timezone: 'Atlantis/Capital',
      overlap: 'maybe' as never,
      catchup: '9999h',
    });
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems.join('\n'), /timezone "Atlantis\/Capital"/);
    assert.match(problems.join('\n'), /cron "0 25 \* \* \*"/);
    assert.match(problems.join('\n'), /overlap must be one of/);
    assert.match(problems.join('\n'), /longer than 7 days/);
    assert.deepEqual(slotParams({ date: 'day {{ schedule.time }}' }, '2026-01-01T00:00:00Z'), {
      date: 'day 2026-01-01T00:00:00Z',
    });
  });
});
