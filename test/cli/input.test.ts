/** What the CLI reads besides flags: times for --since/--until, limits, addresses, graph files. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError, describeError, EXIT } from '../../src/cli/errors.js';
import { parseLimit, parseTimeFlag, parseTimeout, readGraph, resolveAddress } from '../../src/cli/input.js';
import type { CliIO } from '../../src/cli/io.js';
import { AdagioClient, ApiError, MAX_TIME_MS, MAX_TIMEOUT_MS } from '../../src/client/index.js';
import { InvalidGraphError, NotFoundError, UnavailableError } from '../../src/protocol/errors.js';
import { cliInProcess, closedPort, oneErrorLine } from './helpers.js';

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

  it('--since/--until: a time at or before the epoch (0: no bound on the wire) or past 2262 is a usage error', async () => {
    for (const [flag, text, message] of [
      ['--since', '9999-01-01', /^--since: "9999-01-01" is after 2262-04-11T23:47:16\.854Z/],
      ['--since', '99999999999h', /^--since: "99999999999h" is not after 1970-01-01T00:00:00Z/],
      ['--until', '1000-01-01', /^--until: "1000-01-01" is not after 1970-01-01T00:00:00Z/],
      ['--until', '1970-01-01T00:00:00Z', /^--until: "1970-01-01T00:00:00Z" is not after/],
    ] as const)
      assert.throws(
        () => parseTimeFlag(flag, text, NOW),
        (e) => e instanceof CliError && e.exitCode === EXIT.usage && message.test(e.message),
        text,
      );
    assert.equal(parseTimeFlag('--until', '1970-01-01T00:00:00.001Z', NOW), 1);
    // Refused before any request (the address is closed): exit 2, not the client's serialization error.
    const env = { ADAGIO_ADDRESS: `127.0.0.1:${await closedPort()}` };
    const r = await cliInProcess(['runs', 'ls', '--until', '9999-01-01'], { env });
    assert.equal(r.code, EXIT.usage, r.stderr);
    assert.match(oneErrorLine(r.stderr), /^adagio: --until: "9999-01-01" is after 2262-/);
  });

  it('the client: list bounds are rounded to whole ms and range-checked (invalid_argument)', async () => {
    const client = new AdagioClient({ address: `http://127.0.0.1:${await closedPort()}` });
    for (const query of [{ since: -1 }, { until: 0 }, { since: MAX_TIME_MS + 1 }, { until: Number.NaN }])
      await assert.rejects(
        client.listRuns(query),
        (e) =>
          e instanceof ApiError &&
          e.code === 'invalid_argument' &&
          /must be ms since the epoch/.test(e.message),
        JSON.stringify(query),
      );
    // A fractional bound (a duration of 1.5ms back from now) reaches the network: here, a closed port.
    await assert.rejects(client.listRuns({ since: NOW - 1.5, until: NOW + 0.5 }), (e) => {
      assert.ok(e instanceof ApiError && e.code === 'unavailable', String(e));
      return true;
    });
  });

  it("--timeout and the client's timeoutMs: at most 2^31-1 ms, a timer's limit", async () => {
    assert.equal(parseTimeout('24h'), 86_400_000);
    assert.equal(parseTimeout('596h'), 596 * 3_600_000);
    for (const bad of ['600h', '2147483648ms'])
      assert.throws(
        () => parseTimeout(bad),
        (e) => e instanceof CliError && /^--timeout: ".*" is longer than 2147483647 ms/.test(e.message),
      );
    const r = await cliInProcess(['--timeout', '600h', 'stats'], {
      env: { ADAGIO_ADDRESS: `127.0.0.1:${await closedPort()}` },
    });
    assert.equal(r.code, EXIT.usage, r.stderr);
    assert.match(oneErrorLine(r.stderr), /^adagio: --timeout: "600h" is longer than/);
    for (const timeoutMs of [2 ** 31, Number.POSITIVE_INFINITY, 0, -1, Number.NaN])
      assert.throws(
        () => new AdagioClient({ address: 'http://127.0.0.1:1', timeoutMs }),
        (e) => e instanceof ApiError && e.code === 'invalid_argument' && /^timeoutMs must be/.test(e.message),
        String(timeoutMs),
      );
    assert.ok(new AdagioClient({ address: 'http://127.0.0.1:1', timeoutMs: MAX_TIMEOUT_MS }));
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
