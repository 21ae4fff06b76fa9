/**
 * The package's one entry (package.json "exports": ".") is the library users
 * import: every backend, the agent pool, the workflow builder and the API
 * client the README names must be reachable from it (deep imports are
 * blocked by "exports").
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as adagio from '../src/index.js';

describe('library entry', () => {
  it('exports what the README and docs tell users to import', () => {
    for (const name of [
      'AdagioClient',
      'ApiError',
      'DEFAULT_ADDRESS',
      'AgentPool',
      'MemoryRepository',
      'EtcdRepository',
      'PostgresRepository',
      'DynamoDbRepository',
      'RemoteRepository',
      'workflow',
      'defineRuntime',
      'execRuntime',
    ])
      assert.ok(name in adagio, `${name} is exported from src/index.ts`);
  });

  it('the entry is the package.json export users resolve', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    assert.deepEqual(Object.keys(pkg.exports), ['.']);
    assert.equal(pkg.exports['.'].default, './dist/src/index.js');
  });
});
