import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ApiServer } from '../src/api/server.js';
import { MemoryRepository } from '../src/backends/memory/index.js';
import { sevenNode } from './graphs.js';
import { percentile, report } from './report.js';

const ADAGIO = fileURLToPath(new URL('../bin/adagio.js', import.meta.url));
const SAMPLES = 10;

/**
 * `adagio runs ls` wall time from a fresh process, as a user types it: node
 * start-up, the CLI's module graph (compiled dist/ when current, else tsx),
 * one ListRuns over loopback, the table. Median and worst of 10, against an
 * in-process API server holding 20 runs.
 */
export async function run(): Promise<void> {
  const repository = new MemoryRepository();
  const server = new ApiServer({ repository, ui: false });
  const address = await server.listen('127.0.0.1', 0);
  try {
    for (let i = 0; i < 20; i++) await repository.start(sevenNode());
    const times: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t0 = performance.now();
      // Async so the server in this process keeps answering while the CLI runs.
      const code = await new Promise<number | null>((resolve) => {
        const child = spawn(process.execPath, [ADAGIO, 'runs', 'ls', '--address', address], {
          stdio: 'ignore',
        });
        child.once('close', resolve);
      });
      times.push(performance.now() - t0);
      if (code !== 0) throw new Error(`adagio runs ls exited with ${code}`);
    }
    times.sort((a, b) => a - b);
    report('cli', [
      ['runs ls, median of 10', `${percentile(times, 50).toFixed(0)} ms`, 'fresh node process each time'],
      ['runs ls, worst of 10', `${times[times.length - 1]!.toFixed(0)} ms`, ''],
    ]);
  } finally {
    await server.close();
    await repository.close();
  }
}
