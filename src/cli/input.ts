import { readFile } from 'node:fs/promises';
import { MAX_TIME_MS, MAX_TIMEOUT_MS } from '../client/index.js';
import type { GraphSpec } from '../model/types.js';
import { validateGraph } from '../model/validate.js';
import { GraphParseError, graphFromJsonText } from '../model/wire.js';
import { InvalidGraphError } from '../protocol/errors.js';
import { MAX_LIST_LIMIT } from '../protocol/repository.js';
import { DurationError, parseDuration } from '../runtimes/duration.js';
import { CliError } from './errors.js';
import type { CliIO } from './io.js';

/** Everything the CLI reads from its user besides flags: graph files, times, counts, addresses. */

/**
 * Reads a graph from FILE, or stdin for `-` or no file, and checks it the way
 * the daemon will (rule 1), so a bad graph is reported before any network
 * call and with its source named.
 */
export async function readGraph(file: string | undefined, io: CliIO): Promise<GraphSpec> {
  const fromStdin = file === undefined || file === '-';
  const source = fromStdin ? 'stdin' : file;
  if (fromStdin && io.stdin.isTTY)
    io.stderr.write('adagio: reading the graph (JSON) from the terminal; end with Ctrl-D\n');
  let text: string;
  try {
    text = fromStdin ? await readAll(io.stdin) : await readFile(file, 'utf8');
  } catch (e) {
    throw new CliError(`cannot read ${source}: ${describeFsError(e)}`);
  }
  if (text.trim() === '') throw new CliError(`${source}: empty input; expected a graph in JSON`);
  let spec: GraphSpec;
  try {
    spec = graphFromJsonText(text);
  } catch (e) {
    if (e instanceof GraphParseError) throw new CliError(`${source}: ${e.message}`);
    throw e;
  }
  const problems = validateGraph(spec);
  if (problems.length > 0) throw new CliError(`${source}: ${new InvalidGraphError(problems).message}`);
  return spec;
}

async function readAll(stream: AsyncIterable<Uint8Array | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk));
  return Buffer.concat(chunks).toString('utf8');
}

function describeFsError(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'is a directory';
  return (e as Error).message;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2}))?$/;

/**
 * A point in time for `--since`/`--until`: a duration back from now (`90s`,
 * `1h`, `2h30m`) or an RFC 3339 time (`2025-06-01T10:00:00Z`, or a date,
 * taken as midnight UTC). Milliseconds since the epoch.
 */
export function parseTimeFlag(flag: string, text: string, now: number): number {
  const ms = timeOf(text.trim(), now);
  if (ms === undefined)
    throw new CliError(
      `${flag}: "${text}" is neither a duration (e.g. 30m, 1h, 2h30m) nor an RFC 3339 time (e.g. 2025-06-01T10:00:00Z)`,
    );
  // The epoch itself is 0, which the API reads as no bound at all: `--until 1970-01-01` would list every run.
  if (ms <= 0) throw new CliError(`${flag}: "${text}" is not after 1970-01-01T00:00:00Z; give a later time`);
  if (ms > MAX_TIME_MS)
    throw new CliError(
      `${flag}: "${text}" is after ${new Date(MAX_TIME_MS).toISOString()}, the latest time runs can be listed by`,
    );
  return ms;
}

function timeOf(s: string, now: number): number | undefined {
  if (RFC3339.test(s)) {
    const ms = Date.parse(s.replace(' ', 'T'));
    if (!Number.isNaN(ms)) return ms;
  }
  try {
    return now - parseDuration(s);
  } catch (e) {
    if (!(e instanceof DurationError)) throw e;
    return undefined;
  }
}

export function parseLimit(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1 || n > MAX_LIST_LIMIT)
    throw new CliError(`--limit: "${text}" is not a whole number from 1 to ${MAX_LIST_LIMIT}`);
  return n;
}

export function parseAttempt(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < 1)
    throw new CliError(`--attempt: "${text}" is not a whole number from 1`);
  return n;
}

export function parseTimeout(text: string): number {
  let ms = 0;
  try {
    ms = parseDuration(text);
  } catch {
    // reported below with the flag's name
  }
  if (!(ms > 0)) throw new CliError(`--timeout: "${text}" is not a positive duration (e.g. 5s, 500ms)`);
  // A longer timer fires at once: every request would time out immediately.
  if (ms > MAX_TIMEOUT_MS)
    throw new CliError(
      `--timeout: "${text}" is longer than ${MAX_TIMEOUT_MS} ms (about 24.8 days), the most it takes`,
    );
  return ms;
}

export const DEFAULT_ADDRESS = 'http://127.0.0.1:7890';

/**
 * The daemon's address from the flag, ADAGIO_ADDRESS or the default. A bare
 * `host:port` is taken as http, the scheme people leave out most.
 */
export function resolveAddress(flag: string | undefined, env: CliIO['env']): string {
  const raw = (flag ?? env.ADAGIO_ADDRESS ?? '').trim() || DEFAULT_ADDRESS;
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new CliError(`--address: "${raw}" is not an address (e.g. http://127.0.0.1:7890)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CliError(`--address: "${raw}" must be an http:// or https:// address`);
  return withScheme.replace(/\/+$/, '');
}

/**
 * A JSON object read from `file` (a workflow or schedule file), or a CliError
 * naming the file: unreadable, not JSON, or not an object (`shape` says what it should be).
 */
export async function readJsonObjectFile(file: string, shape: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new CliError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new CliError(`${file}: ${shape}`);
  return json as Record<string, unknown>;
}

/**
 * Refuses a key `o` (read from `file`) may not have, as the API does: a
 * misspelt optional key (`timezon`) would otherwise be dropped in silence.
 * `where` places a nested object (`params[0]: `).
 */
export function refuseUnknownKeys(
  file: string,
  o: Record<string, unknown>,
  known: readonly string[],
  where = '',
): void {
  const unknown = Object.keys(o).find((k) => !known.includes(k));
  if (unknown !== undefined)
    throw new CliError(
      `${file}: ${where}unknown key ${JSON.stringify(unknown)} (the keys are ${known.join(', ')})`,
    );
}
