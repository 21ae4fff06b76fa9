/** What the CLI reads besides flags: times for --since/--until, limits, addresses, graph files. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError, describeError, EXIT } from '../../src/cli/errors.js';
import { parseLimit, parseTimeFlag, readGraph, resolveAddress } from '../../src/cli/input.js';
import type { CliIO } from '../../src/cli/io.js';
import { InvalidGraphError, NotFoundError, UnavailableError } from '../../src/protocol/errors.js';

const NOW = Date.parse('2025-06-01T12:00:00Z');

function stdinIO(text: string): CliIO {
  return {
    stdout: { write: () => true },
    stderr: { write: () => true },
    stdin: (async function* () {
      // Split inside a multi-byte character: chunks must be joined as bytes, not strings.
      const bytes = Buffer.from(text);
      yield bytes.subarray(0, 5);
      yield bytes.subarray(5);
    })(),
    env: {},
    now: () => NOW,
  };
}

describe('cli input', () => {
  it('--since/--until: durations back from now, RFC 3339 times and dates', () => {
    assert.equal(parseTimeFlag('--since', '1h', NOW), NOW - 3_600_000);
    assert.equal(parseTimeFlag('--since', '2h30m', NOW), NOW - 9_000_000);
    assert.equal(parseTimeFlag('--since', '90s', NOW), NOW - 90_000);
    assert.equal(parseTimeFlag('--since', '2025-06-01T10:00:00Z', NOW), Date.parse('2025-06-01T10:00:00Z'));
    assert.equal(
      parseTimeFlag('--since', '2025-06-01T12:00:00+02:00', NOW),
      Date.parse('2025-06-01T10:00:00Z'),
    );
    assert.equal(parseTimeFlag('--until', '2025-05-31', NOW), Date.parse('2025-05-31T00:00:00Z'));
    for (const bad of ['yesterday', '10', '2025-13-45', '1 hour', ''])
      assert.throws(
        () => parseTimeFlag('--since', bad, NOW),
        (e) => e instanceof CliError && /--since/.test(e.message),
      );
  });

  it('--limit is a whole number from 1 to 1000', () => {
    assert.equal(parseLimit('1'), 1);
    assert.equal(parseLimit('1000'), 1000);
    for (const bad of ['0', '1001', '-1', '2.5', 'ten', ''])
      assert.throws(() => parseLimit(bad), /--limit: .* is not a whole number from 1 to 1000/);
  });

  it('addresses: flag over env over default; bare host:port means http', () => {
    assert.equal(resolveAddress(undefined, {}), 'http://127.0.0.1:7890');
    assert.equal(resolveAddress(undefined, { ADAGIO_ADDRESS: 'example.test:80' }), 'http://example.test:80');
    assert.equal(resolveAddress('https://a.test/', { ADAGIO_ADDRESS: 'b.test:1' }), 'https://a.test');
    assert.throws(() => resolveAddress('ftp://x', {}), /must be an http:\/\/ or https:\/\/ address/);
    assert.throws(() => resolveAddress('http://[nope', {}), /is not an address/);
  });

  it('reads a graph from stdin in chunks and validates it locally', async () => {
    const spec = await readGraph(undefined, stdinIO('{"nodes":[{"name":"é","runtime":"debug"}]}'));
    assert.deepEqual(
      spec.nodes.map((n) => n.name),
      ['é'],
    );
    await assert.rejects(
      readGraph('-', stdinIO('{"nodes":[{"name":"a","runtime":""}]}')),
      (e) => e instanceof CliError && e.message === 'stdin: invalid graph: node "a" has an empty runtime',
    );
  });

  it('errors map to exit codes: usage 2, daemon 3, other 1', () => {
    assert.deepEqual(describeError(new CliError('bad flag')), { message: 'bad flag', exitCode: EXIT.usage });
    assert.equal(describeError(new InvalidGraphError(['x'])).exitCode, EXIT.usage);
    assert.equal(describeError(new NotFoundError('run', 'r')).exitCode, EXIT.api);
    assert.equal(describeError(new UnavailableError('down')).exitCode, EXIT.api);
    assert.deepEqual(describeError(new Error('two\n  lines')), {
      message: 'two lines',
      exitCode: EXIT.failed,
    });
  });
});
