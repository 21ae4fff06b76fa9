/**
 * buffer_one (rule 18) over time, on the memory backend with the scheduler
 * and the store on one manual clock: a slot held for an earlier run is late
 * from when that run ends, not from its own time, so an overrun longer than
 * the catch-up window still runs the buffered slot; a slot late for any
 * other reason (downtime) is missed as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRepository } from '../src/backends/memory/index.js';
import { ManualClock } from '../src/model/ids.js';
import { Scheduler } from '../src/scheduler/scheduler.js';

const MIN = 60_000;
const plus = (iso: string, ms: number) => new Date(Date.parse(iso) + ms).toISOString().replace('.000Z', 'Z');

async function setup() {
  const clock = new ManualClock(Date.parse('2026-03-01T12:00:30Z'));
  const repo = new MemoryRepository({ clock });
  await repo.putWorkflow('w', {
    spec: { nodes: [{ name: 'a', runtime: 'work', metadata: {}, retry: {} }], edges: [] },
  });
  // Every 5 minutes, the default catch-up (the 30 s grace).
  const s = await repo.putSchedule('five', { workflow: 'w', cron: '*/5 * * * *', overlap: 'buffer_one' });
  const scheduler = new Scheduler(repo, { clock });
  return { clock, repo, scheduler, first: s.nextSlot };
}

const slots = async (repo: MemoryRepository) =>
  (await repo.listRuns({ labels: { 'adagio.schedule': 'five' } })).runs
    .map((r) => r.labels?.['adagio.slot'])
    .sort();

describe('scheduler: buffer_one holds a slot for an overrunning run', () => {
  it('the buffered slot starts when the earlier run ends, however long it waited', async () => {
    const { clock, repo, scheduler, first } = await setup();
    clock.set(Date.parse(first) + 1_000);
    await scheduler.tick();
    const [earlier] = (await repo.listRuns({ labels: { 'adagio.schedule': 'five' } })).runs;
    assert.ok(earlier, 'the first slot started');
    // The next slot comes due while the first run still goes: it waits, past the catch-up window too.
    clock.set(Date.parse(plus(first, 5 * MIN)) + 1_000);
    await scheduler.tick();
    clock.set(Date.parse(plus(first, 5 * MIN)) + 45_000);
    await scheduler.tick();
    let s = await repo.getSchedule('five');
    assert.equal(s.nextSlot, plus(first, 5 * MIN), 'still waiting, not missed');
    assert.deepEqual(
      s.history.map((r) => r.outcome),
      ['started'],
    );
    // The earlier run ends; the next tick starts the buffered slot.
    clock.set(Date.parse(plus(first, 5 * MIN)) + 50_000);
    await repo.cancel(earlier.id);
    clock.set(Date.parse(plus(first, 5 * MIN)) + 51_000);
    await scheduler.tick();
    s = await repo.getSchedule('five');
    assert.deepEqual(await slots(repo), [first, plus(first, 5 * MIN)]);
    assert.deepEqual(s.history[0], {
      slot: plus(first, 5 * MIN),
      outcome: 'started',
      runId: (await repo.listRuns({ labels: { 'adagio.slot': plus(first, 5 * MIN) } })).runs[0]!.id,
    });
    await repo.close();
  });

  it('a slot late with no earlier run holding it is missed, as downtime is', async () => {
    const { clock, repo, scheduler, first } = await setup();
    clock.set(Date.parse(first) + 1_000);
    await scheduler.tick();
    const [earlier] = (await repo.listRuns({ labels: { 'adagio.schedule': 'five' } })).runs;
    await repo.cancel(earlier!.id); // ended before the next slot came due
    // No tick until 45 s after the next slot: the scheduler was down.
    clock.set(Date.parse(plus(first, 5 * MIN)) + 45_000);
    await scheduler.tick();
    const s = await repo.getSchedule('five');
    assert.equal(s.history[0]!.outcome, 'missed');
    assert.deepEqual(await slots(repo), [first]);
    await repo.close();
  });
});
