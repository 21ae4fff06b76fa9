/**
 * `adagio schedules …` and the schedule routes (rule 18) against a real
 * adagiod (all in one, so its scheduler runs) with exec agents: a schedule
 * every second starts runs labelled with their slots; show, pause, trigger,
 * backfill and rm; bad input is a 400 naming it, over JSON and the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AdagioClient } from '../../src/client/index.js';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';
import { cli, cliInProcess, eventually, oneErrorLine } from './helpers.js';

const NIGHTLY = fileURLToPath(new URL('../../examples/definitions/nightly.json', import.meta.url));
const SCHEDULE = fileURLToPath(new URL('../../examples/schedules/nightly.json', import.meta.url));

describe('adagio schedules', () => {
  let daemon: RunningDaemon;
  let env: NodeJS.ProcessEnv;
  let client: AdagioClient;
  let dir: string;

  before(async () => {
    daemon = await startDaemon(['--grace-period', '1s']);
    env = { ADAGIO_ADDRESS: daemon.address };
    client = new AdagioClient({ address: daemon.address });
    dir = await mkdtemp(join(tmpdir(), 'adagio-sched-'));
    const put = await cli(['workflows', 'put', NIGHTLY], { env });
    assert.equal(put.code, 0, put.stderr);
  });
  after(async () => {
    await daemon?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('put the example, ls and show it; pause and resume; rm', async () => {
    const put = await cli(['schedules', 'put', SCHEDULE], { env });
    assert.equal(put.code, 0, put.stderr);
    assert.match(put.stdout, /^stored schedule nightly: next slot /);
    const ls = await cliInProcess(['schedules', 'ls'], { env });
    assert.match(ls.stdout, /^NAME\s+WORKFLOW\s+CRON\s+TIMEZONE\s+OVERLAP\s+STATE\s+NEXT/);
    assert.match(ls.stdout, /nightly\s+nightly\s+0 2 \* \* \*\s+Europe\/Berlin\s+skip\s+active/);
    const show = await cliInProcess(['schedules', 'show', 'nightly'], { env });
    assert.match(show.stdout, /^schedule nightly\n/);
    assert.match(show.stdout, /next fire times:\n {2}\S/);
    const json = JSON.parse((await cliInProcess(['schedules', 'show', 'nightly', '--json'], { env })).stdout);
    assert.equal(json.nextSlots.length, 10);
    assert.ok(
      json.nextSlots.every((t: string) => /T0[01]:00:00Z$/.test(t)),
      'at 02:00 Berlin time',
    );
    assert.equal(
      (await cliInProcess(['schedules', 'pause', 'nightly'], { env })).stdout,
      'schedule nightly paused\n',
    );
    assert.equal((await client.getSchedule('nightly')).schedule.paused, true);
    assert.equal(
      (await cliInProcess(['schedules', 'resume', 'nightly'], { env })).stdout,
      'schedule nightly resumed\n',
    );
    // The same over the JSON routes.
    const post = (path: string) =>
      fetch(`${daemon.address}/v0/schedules/nightly/${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
      });
    assert.equal(
      ((await (await post('pause')).json()) as { schedule: { paused: boolean } }).schedule.paused,
      true,
    );
    assert.equal((await post('resume')).status, 200);
    const got = (await (await fetch(`${daemon.address}/v0/schedules/nightly`)).json()) as {
      schedule: { cron: string };
      nextSlots: string[];
    };
    assert.equal(got.schedule.cron, '0 2 * * *');
    assert.equal(got.nextSlots.length, 10);
    const listed = (await (await fetch(`${daemon.address}/v0/schedules`)).json()) as { schedules: unknown[] };
    assert.equal(listed.schedules.length, 1);
    const wfRm = await cliInProcess(['workflows', 'rm', 'nightly'], { env });
    assert.notEqual(wfRm.code, 0);
    assert.match(oneErrorLine(wfRm.stderr), /used by schedule "nightly"/);
    assert.equal(
      (await cliInProcess(['schedules', 'rm', 'nightly'], { env })).stdout,
      'deleted schedule nightly\n',
    );
    assert.deepEqual(await client.listSchedules(), []);
  });

  it('a schedule every second starts one run per slot, labelled; trigger and backfill start runs', async () => {
    await client.putSchedule('every-second', {
      workflow: 'nightly',
      cron: '* * * * * *',
      params: { date: '{{schedule.time}}' },
      overlap: 'allow',
    });
    const runs = await eventually(async () => {
      const page = await client.listRuns({ labels: { 'adagio.schedule': 'every-second' } });
      return page.runs.length >= 3 ? page.runs : undefined;
    });
    await client.pauseSchedule('every-second');
    const slots = runs.map((r) => r.labels!['adagio.slot']!);
    assert.equal(new Set(slots).size, slots.length, 'one run per slot');
    const run = await client.inspect(runs[0]!.id);
    assert.deepEqual(run.params, { date: slots[0], env: 'staging' });

    const trig = await cliInProcess(['schedules', 'trigger', 'every-second', '--json'], { env });
    assert.equal(trig.code, 0, trig.stderr);
    assert.equal(JSON.parse(trig.stdout).runs[0].labels['adagio.trigger'], 'manual');

    const backfill = (from: string, to: string) =>
      cliInProcess(['schedules', 'backfill', 'every-second', '--from', from, '--to', to], { env });
    const bf = await backfill('2026-01-01T00:00:00Z', '2026-01-01T00:00:02Z');
    assert.equal(bf.code, 0, bf.stderr);
    assert.match(bf.stdout, /2026-01-01T00:00:00Z.*\n.*2026-01-01T00:00:01Z.*\n.*2026-01-01T00:00:02Z/);
    const reversed = await backfill('2026-01-02T00:00:00Z', '2026-01-01T00:00:00Z');
    assert.equal(reversed.code, 2);
    assert.match(oneErrorLine(reversed.stderr), /from 2026-01-02T00:00:00Z is after to 2026-01-01T00:00:00Z/);
    const tooLong = await backfill('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z');
    assert.match(oneErrorLine(tooLong.stderr), /more than 500 slots/);
    await client.deleteSchedule('every-second');
  });

  it('schedules put refuses a key a schedule file does not have, as the API does, naming the file and key', async () => {
    const file = join(dir, 'typo.json');
    await writeFile(
      file,
      JSON.stringify({
        name: 'typo',
        workflow: 'nightly',
        cron: '0 2 * * *',
        timezon: 'Europe/Berlin',
        params: { date: 'x' },
      }),
    );
    const r = await cli(['schedules', 'put', file], { env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      oneErrorLine(r.stderr),
      /^adagio: \S*typo\.json: unknown key "timezon" \(the keys are .*timezone/,
    );
    assert.ok(!(await client.listSchedules()).some((s) => s.name === 'typo'), 'nothing stored');
  });

  it('bad input: 400 over JSON naming it, nothing stored; the CLI checks a file before sending it', async () => {
    const put = (name: string, body: unknown) =>
      fetch(`${daemon.address}/v0/schedules/${name}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const cases: [unknown, RegExp][] = [
      [{ workflow: 'nightly', cron: '0 2 * *', params: { date: 'x' } }, /cron "0 2 \* \*" has 4 fields/],
      [
        { workflow: 'nightly', cron: '0 2 * * *', timezone: 'Nowhere/Land', params: { date: 'x' } },
        /timezone "Nowhere\/Land"/,
      ],
      [{ workflow: 'nope', cron: '0 2 * * *' }, /workflow "nope" does not exist/],
      [
        { workflow: 'nightly', cron: '0 2 * * *', overlap: 'never', params: { date: 'x' } },
        /overlap must be one of/,
      ],
      [{ workflow: 'nightly', cron: '0 2 * * *', colour: 'red' }, /colour/],
    ];
    for (const [body, message] of cases) {
      const res = await put('bad', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.match(((await res.json()) as { message: string }).message, message);
    }
    const missing = await fetch(`${daemon.address}/v0/schedules/none`);
    assert.equal(missing.status, 404);
    assert.deepEqual(await client.listSchedules(), []);

    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ name: 'bad', workflow: 'nightly', cron: 'every day' }));
    const res = await cliInProcess(['schedules', 'put', file], { env });
    assert.equal(res.code, 2);
    assert.match(oneErrorLine(res.stderr), /bad\.json: .*cron "every day"/);
    const help = await cliInProcess(['schedules', 'backfill', '--help'], { env });
    assert.match(help.stdout, /--from <time>/);
  });
});
