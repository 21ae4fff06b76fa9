/**
 * Exactly once per slot (rule 18) with a scheduler whose read of a schedule
 * is stale: another scheduler decided the slot since (here: missed, its clock
 * past the catch-up window). The stale one must not start it; and should the
 * decision land between its last look and its start, the run it started is
 * cancelled once it loses the schedule's compare-and-set.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRepository } from '../src/backends/memory/index.js';
import { ManualClock } from '../src/model/ids.js';
import type { Schedule } from '../src/model/index.js';
import type { Repository } from '../src/protocol/repository.js';
import { Scheduler } from '../src/scheduler/scheduler.js';

const MIN = 60_000;

async function setup(cron = '*/5 * * * *') {
  const clock = new ManualClock(Date.parse('2026-03-01T12:00:30Z'));
  const repo = new MemoryRepository({ clock });
  await repo.putWorkflow('w', {
    spec: { nodes: [{ name: 'a', runtime: 'work', metadata: {}, retry: {} }], edges: [] },
  });
  const s = await repo.putSchedule('five', { workflow: 'w', cron });
  return { clock, repo, slot: s.nextSlot };
}

/** The repository as a scheduler that read `stale` sees it: its list, and with `alsoGet` its next read of the schedule, answer that copy. */
function staleView(repo: MemoryRepository, stale: Schedule, alsoGet: boolean): Repository {
  let staleGets = alsoGet ? 1 : 0;
  return new Proxy(repo, {
    get(target, prop, receiver) {
      if (prop === 'listSchedules') return async () => [stale];
      if (prop === 'getSchedule')
        return async (name: string) => (staleGets-- > 0 ? stale : target.getSchedule(name));
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as Repository;
}

const runsOf = async (repo: MemoryRepository) =>
  (await repo.listRuns({ labels: { 'adagio.schedule': 'five' } })).runs;

describe('scheduler: a stale read of a schedule starts nothing decided otherwise', () => {
  it('a slot another scheduler recorded missed is not started', async () => {
    const { clock, repo, slot } = await setup();
    clock.set(Date.parse(slot) + 1_000);
    const stale = await repo.getSchedule('five');
    // Another scheduler, its clock 10 minutes on, records the slot (and the next) missed.
    const later = new ManualClock(Date.parse(slot) + 10 * MIN + 45_000);
    await new Scheduler(repo, { clock: later }).tick();
    assert.equal((await repo.getSchedule('five')).history.at(-1)?.outcome, 'missed');
    // This one read the schedule before that, at the slot's time.
    await new Scheduler(staleView(repo, stale, false), { clock }).tick();
    assert.deepEqual(await runsOf(repo), [], 'no run for a missed slot');
  });

  it('a start that loses the compare to a decision made after its last look is cancelled', async () => {
    const { clock, repo, slot } = await setup();
    clock.set(Date.parse(slot) + 1_000);
    const stale = await repo.getSchedule('five');
    const later = new ManualClock(Date.parse(slot) + 10 * MIN + 45_000);
    await new Scheduler(repo, { clock: later }).tick();
    // Its look right before the start is stale too: the other decision came just after it.
    await new Scheduler(staleView(repo, stale, true), { clock }).tick();
    const runs = await runsOf(repo);
    assert.equal(runs.length, 1, 'it started the slot');
    assert.equal(runs[0]!.conclusion, 'CANCELLED', 'and cancelled it once it found the slot missed');
    const s = await repo.getSchedule('five');
    assert.ok(
      s.history.every((r) => r.outcome === 'missed'),
      'the schedule keeps its decision',
    );
  });

  it('a start it made is cancelled though the decision fell out of the history (a catch-up of 120 missed slots)', async () => {
    const { clock, repo, slot } = await setup('* * * * *');
    clock.set(Date.parse(slot) + 1_000);
    const stale = await repo.getSchedule('five');
    // Two hours later another scheduler records 120 slots missed; the history keeps the latest 50.
    const later = new ManualClock(Date.parse(slot) + 120 * MIN + 45_000);
    await new Scheduler(repo, { clock: later }).tick();
    const s = await repo.getSchedule('five');
    assert.ok(!s.history.some((r) => r.slot === slot), 'the slot is no longer in the history');
    await new Scheduler(staleView(repo, stale, true), { clock }).tick();
    const runs = await runsOf(repo);
    assert.equal(runs.length, 1);
    assert.equal(runs[0]!.conclusion, 'CANCELLED', 'the run it made for a missed slot is cancelled');
  });
});
