import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EtcdRepository, type EtcdRepositoryOptions } from '../../src/backends/etcd/index.js';
import { freePort } from './ports.js';

/**
 * etcd for tests (docs/design.md §5): real `etcd` processes from Debian's
 * etcd-server on free loopback ports with temporary data dirs. Short election
 * timeouts keep etcd's minimum lease TTL at 1 s, so lapse tests stay quick.
 * Every process started here is killed when the test process exits.
 */
export const ETCD_BIN = process.env.ADAGIO_TEST_ETCD_BIN || '/usr/bin/etcd';

const live = new Set<ChildProcess>();
const scratch = new Set<string>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

/** A RAM-backed directory when there is one: etcd fsyncs every commit. */
function scratchDir(): string {
  for (const base of ['/dev/shm', tmpdir()]) {
    try {
      accessSync(base, constants.W_OK);
      const dir = mkdtempSync(join(base, 'adagio-etcd-'));
      scratch.add(dir);
      return dir;
    } catch {
      // try the next
    }
  }
  return mkdtempSync(join(tmpdir(), 'adagio-etcd-'));
}

interface MemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
}

/** One etcd process; restartable on the same ports and data. */
export class EtcdMember {
  private proc?: ChildProcess;
  private log = '';

  constructor(
    readonly spec: MemberSpec,
    private readonly initialCluster: string,
  ) {}

  get endpoint(): string {
    return `127.0.0.1:${this.spec.clientPort}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** The running process's id (benchmarks read its CPU time from /proc). */
  get pid(): number | undefined {
    return this.running ? this.proc?.pid : undefined;
  }

  start(state: 'new' | 'existing' = 'new'): void {
    const s = this.spec;
    const proc = spawn(
      ETCD_BIN,
      [
        '--name',
        s.name,
        '--data-dir',
        s.dataDir,
        '--listen-client-urls',
        `http://127.0.0.1:${s.clientPort}`,
        '--advertise-client-urls',
        `http://127.0.0.1:${s.clientPort}`,
        '--listen-peer-urls',
        `http://127.0.0.1:${s.peerPort}`,
        '--initial-advertise-peer-urls',
        `http://127.0.0.1:${s.peerPort}`,
        '--initial-cluster',
        this.initialCluster,
        '--initial-cluster-state',
        state,
        '--initial-cluster-token',
        `adagio-test-${process.pid}`,
        '--heartbeat-interval',
        '50',
        '--election-timeout',
        '500',
        '--log-level',
        'error',
        '--logger',
        'zap',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    proc.stderr?.on('data', (d: Buffer) => {
      this.log = (this.log + d.toString()).slice(-4000);
    });
    // Never what keeps a test process alive: the exit hook kills it.
    proc.unref();
    (proc.stderr as unknown as { unref?: () => void } | null)?.unref?.();
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    this.proc = proc;
  }

  /** kill -9: no goodbye to the cluster. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.ref(); // keep the loop alive until the exit arrives
    p.kill('SIGKILL');
    await exited;
  }

  /** Waits until this member answers its health endpoint. */
  async ready(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`etcd ${this.spec.name} exited: ${this.log}`);
      try {
        const r = await fetch(`http://${this.endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
        const body = (await r.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline)
        throw new Error(`etcd ${this.spec.name} not healthy in ${timeoutMs} ms: ${this.log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A single-member or multi-member etcd cluster on loopback. */
export class EtcdCluster {
  private constructor(
    readonly members: EtcdMember[],
    private readonly dir: string,
  ) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  static async start(size = 1): Promise<EtcdCluster> {
    const dir = scratchDir();
    const specs: MemberSpec[] = [];
    for (let i = 0; i < size; i++)
      specs.push({
        name: `m${i}`,
        clientPort: await freePort(),
        peerPort: await freePort(),
        dataDir: join(dir, `m${i}`),
      });
    const initial = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
    const cluster = new EtcdCluster(
      specs.map((s) => new EtcdMember(s, initial)),
      dir,
    );
    for (const m of cluster.members) m.start('new');
    try {
      await Promise.all(cluster.members.map((m) => m.ready()));
    } catch (e) {
      await cluster.destroy();
      throw e;
    }
    return cluster;
  }

  /** Kills member `i` (SIGKILL) and starts it again on the same data. */
  async restart(i = 0): Promise<void> {
    const m = this.members[i]!;
    await m.kill();
    m.start('existing');
    await m.ready();
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.kill()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let shared: Promise<EtcdCluster> | undefined;

/** One etcd per test process, started on first use; tests keep apart by key namespace. */
export function sharedEtcd(): Promise<EtcdCluster> {
  shared ??= EtcdCluster.start(1);
  return shared;
}

let counter = 0;

/** A namespace no other test (or test process) uses. */
export function uniqueNamespace(prefix = 'adagio-test'): string {
  return `${prefix}/${process.pid}-${++counter}-${Math.random().toString(36).slice(2, 8)}/`;
}

/** A repository on a fresh namespace of the shared etcd; teardown closes it and deletes its keys. */
export async function etcdRepository(
  options: Partial<EtcdRepositoryOptions> = {},
): Promise<{ repository: EtcdRepository; namespace: string; teardown: () => Promise<void> }> {
  const cluster = await sharedEtcd();
  const namespace = options.namespace ?? uniqueNamespace();
  const repository = new EtcdRepository({ hosts: cluster.endpoints, ...options, namespace });
  return {
    repository,
    namespace,
    teardown: async () => {
      await repository.deleteNamespace().catch(() => {});
      await repository.close();
    },
  };
}
