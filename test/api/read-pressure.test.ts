/**
 * Reads and floods that must not hurt writes (issue 17, items 5 and 7), against a real adagiod
 * on the memory backend:
 * - a run with 40 attempts of 1 MiB each is read over and over (GET /v0/runs/{id}) and watched,
 *   while an unrelated node sleeping 25 s (the default 10 s lease, agents heartbeating normally)
 *   must still end SUCCESS; each read stays within the output budget, the watch sends each attempt once;
 * - a back-to-back flood of starts gets 429s past -max-queued-nodes and the daemon's RSS stays bounded.
 * The daemon's RSS is logged (VmRSS from /proc) for the report.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { type RunningDaemon, startDaemon } from '../support/daemon.js';

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function put(address: string, spec: unknown): Promise<Response> {
  return fetch(`${address}/v0/runs`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ spec }),
  });
}

describe('reads that cannot hurt writes', () => {
  let d: RunningDaemon | undefined;
  after(async () => {
    await d?.stop();
  });

  it('an unrelated 25 s node ends SUCCESS while a 40 × 1 MiB run is read and watched', {
    timeout: 180_000,
  }, async () => {
    d = await startDaemon(['--agents', '4', '--exec-allow', '/bin/*,/usr/bin/*']);
    const pid = d.child.pid!;
    const big = await put(d.address, {
      nodes: [
        {
          name: 'noisy',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': { values: ['/bin/sh'] },
            'adagio.arguments.exec.args': {
              values: ['-c', "head -c 1048576 /dev/zero | tr '\\000' x; exit 1"],
            },
          },
          retry: { fail: { max_attempts: 40 } },
        },
      ],
      edges: [],
    });
    assert.equal(big.status, 200, await big.clone().text());
    const bigId = ((await big.json()) as { run: { id: string } }).run.id;
    const sleeper = await put(d.address, {
      nodes: [
        {
          name: 'sleeper',
          runtime: 'debug',
          metadata: { 'adagio.arguments.debug.sleep': { values: ['25s'] } },
        },
      ],
      edges: [],
    });
    assert.equal(sleeper.status, 200);
    const sleeperId = ((await sleeper.json()) as { run: { id: string } }).run.id;

    // A reader of the big run's watch: counts the bytes it is sent.
    let watchBytes = 0;
    const watching = (async () => {
      const res = await fetch(`${d!.address}/v0/runs/${bigId}/watch`);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
        watchBytes += chunk.byteLength;
    })();

    let reads = 0;
    let maxReadBytes = 0;
    let maxReadMs = 0;
    let maxRss = 0;
    let sleeperRun: { status: string; conclusion?: string } = { status: '' };
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const started = performance.now();
      const text = await (await fetch(`${d.address}/v0/runs/${bigId}`)).text();
      maxReadMs = Math.max(maxReadMs, performance.now() - started);
      maxReadBytes = Math.max(maxReadBytes, text.length);
      reads++;
      maxRss = Math.max(maxRss, rssMiB(pid));
      sleeperRun = (
        (await (await fetch(`${d.address}/v0/runs/${sleeperId}`)).json()) as { run: typeof sleeperRun }
      ).run;
      const bigRun = JSON.parse(text) as { run: { status: string; nodes: { attempts: unknown[] }[] } };
      if (sleeperRun.status === 'COMPLETED' && bigRun.run.status === 'COMPLETED') break;
    }
    await watching;
    const bigRun = (await (await fetch(`${d.address}/v0/runs/${bigId}`)).json()) as {
      run: { conclusion: string; nodes: { attempts: { outputOmitted?: boolean; outputSize?: string }[] }[] };
    };
    const attempts = bigRun.run.nodes[0]!.attempts;
    console.log(
      `# read pressure: ${reads} reads of the 40 × 1 MiB run, largest ${(maxReadBytes / 2 ** 20).toFixed(1)} MiB in up to ${maxReadMs.toFixed(0)} ms; watch sent ${(watchBytes / 2 ** 20).toFixed(1)} MiB; daemon RSS peak ${maxRss.toFixed(0)} MiB`,
    );
    assert.equal(
      sleeperRun.conclusion,
      'SUCCESS',
      `the unrelated node: ${JSON.stringify(sleeperRun).slice(0, 2000)}`,
    );
    assert.equal(bigRun.run.conclusion, 'FAIL');
    assert.equal(attempts.length, 40);
    assert.ok(
      attempts.some((a) => a.outputOmitted),
      'outputs past the budget are left out',
    );
    assert.ok(maxReadBytes < 8 * 2 ** 20, `a read stays within the output budget, got ${maxReadBytes} bytes`);
    // Each attempt's output crosses twice: streamed live while it runs, then in the recorded
    // attempt: 2 × 40 MiB (base64 in JSON: 4/3) ≈ 107 MiB, never 40²/2 MiB (over 1 GiB).
    assert.ok(watchBytes < 120 * 2 ** 20, `watch sent ${watchBytes} bytes`);
    // One attempt's full output on request.
    const one = (await (
      await fetch(`${d.address}/v0/runs/${bigId}/nodes/noisy/attempts/1/output`)
    ).json()) as {
      output: string;
    };
    assert.equal(Buffer.from(one.output, 'base64').byteLength, 1024 * 1024);
    await d.stop();
    d = undefined;
  });

  it("inputs count against a read's output budget: a 1 MiB output fanned out to 12 nodes is not read 12 times", {
    timeout: 120_000,
  }, async () => {
    d = await startDaemon(['--agents', '4', '--exec-allow', '/bin/*,/usr/bin/*']);
    const kids = Array.from({ length: 12 }, (_, i) => ({ name: `k${i}`, runtime: 'debug' }));
    const started = await put(d.address, {
      nodes: [
        {
          name: 'big',
          runtime: 'exec',
          metadata: {
            'adagio.arguments.exec.command': { values: ['/bin/sh'] },
            'adagio.arguments.exec.args': { values: ['-c', "head -c 1048576 /dev/zero | tr '\\000' x"] },
          },
        },
        ...kids,
      ],
      edges: kids.map((k) => ({ source: 'big', destination: k.name })),
    });
    assert.equal(started.status, 200, await started.clone().text());
    const id = ((await started.json()) as { run: { id: string } }).run.id;
    // Watched to its end: node messages hold each node's inputs within the budget too.
    let watchBytes = 0;
    const res = await fetch(`${d.address}/v0/runs/${id}/watch`);
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>)
      watchBytes += chunk.byteLength;
    const text = await (await fetch(`${d.address}/v0/runs/${id}`)).text();
    const run = (
      JSON.parse(text) as {
        run: {
          conclusion: string;
          nodes: { inputs?: Record<string, string>; omittedInputs?: Record<string, string> }[];
        };
      }
    ).run;
    assert.equal(run.conclusion, 'SUCCESS');
    assert.ok(text.length < 8 * 2 ** 20, `the read stays within the budget: ${text.length} bytes`);
    const kept = run.nodes.filter((n) => n.inputs?.big !== undefined).length;
    const omitted = run.nodes.filter((n) => n.omittedInputs?.big === '1048576').length;
    assert.ok(kept >= 1 && kept < 12, `some inputs kept (${kept})`);
    assert.equal(kept + omitted, 12, 'the others are marked left out, with their size');
    assert.ok(watchBytes < 12 * 2 ** 20 * 1.2, `the watch sent ${watchBytes} bytes`);
    await d.stop();
    d = undefined;
  });

  it('a flood of starts gets 429 past -max-queued-nodes and memory stays bounded', {
    timeout: 120_000,
  }, async () => {
    // No agent serves "parked": every node stays READY, so the backlog only grows until the cap.
    d = await startDaemon(['--agents', '1', '--max-queued-nodes', '5000']);
    const pid = d.child.pid!;
    const nodes = Array.from({ length: 50 }, (_, i) => ({ name: `n${i}`, runtime: 'parked' }));
    const before = rssMiB(pid);
    let accepted = 0;
    let refused = 0;
    let message = '';
    let maxRss = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 100; i++) {
          const res = await put(d!.address, { nodes, edges: [] });
          if (res.status === 200) accepted++;
          else if (res.status === 429) {
            refused++;
            message = ((await res.json()) as { message: string }).message;
            continue;
          } else assert.fail(`unexpected ${res.status}: ${await res.text()}`);
          await res.arrayBuffer();
        }
        maxRss = Math.max(maxRss, rssMiB(pid));
      }),
    );
    const stats = (await (await fetch(`${d.address}/v0/stats`)).json()) as { stats: { readyNodes: string } };
    console.log(
      `# start flood: ${accepted} runs accepted, ${refused} refused with 429; ${stats.stats.readyNodes} nodes queued; daemon RSS ${before.toFixed(0)} MiB before, peak ${maxRss.toFixed(0)} MiB`,
    );
    assert.ok(refused > 0, 'the flood is refused past the cap');
    assert.match(message, /limit is 5000/);
    assert.ok(Number(stats.stats.readyNodes) <= 5000, `queued ${stats.stats.readyNodes}`);
    assert.ok(maxRss < before + 200, `RSS grew from ${before} to ${maxRss} MiB`);
  });
});
