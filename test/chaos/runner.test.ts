/** `npm run chaos`'s own options: bad ones stop it before any store starts, saying which is wrong. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const RUNNER = fileURLToPath(new URL('./run.ts', import.meta.url));
const chaos = (...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', RUNNER, ...args], { encoding: 'utf8', timeout: 60_000 });

describe('chaos runner options', () => {
  for (const [args, message] of [
    [['postgres', '--claim-ahead', 'x'], '--claim-ahead must be a whole number >= 0, got x'],
    [['postgres', '--claim-ahead=-1'], '--claim-ahead must be a whole number >= 0, got -1'],
    [['postgres', '--claims', '3'], "Unknown option '--claims'"],
    [['postgres', '--runs', '0'], '--runs must be a whole number >= 1, got 0'],
    [['etcd', 'nosuch'], 'unknown backend nosuch; choose from postgres, etcd, dynamodb'],
  ] as const)
    it(`refuses ${args.join(' ')}`, () => {
      const r = chaos(...args);
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, new RegExp(message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.doesNotMatch(r.stdout, /chaos \w+:/, 'no store ran');
    });
});
