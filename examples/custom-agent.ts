/**
 * Your own runtime next to the built-in ones, run by an agent pool on the
 * embedded (memory) backend, with a workflow written in TypeScript.
 *
 *   npx tsx examples/custom-agent.ts
 *
 * Against a shared backend (etcd, PostgreSQL) the same pool runs unchanged:
 * only the repository differs, and any number of such processes can share it.
 */
// In your own project: `from 'adagio'`.
import {
  AgentPool,
  arg,
  builtinRuntimes,
  createLogger,
  defineRuntime,
  exec,
  MemoryRepository,
  workflow,
} from '../src/index.js';

// A runtime with typed arguments. `text` will come from an upstream node's output.
const wordCount = defineRuntime({
  name: 'word-count',
  args: {
    text: arg.string(),
    minLength: arg.int({ default: 1 }),
  },
  run: ({ text, minLength }, ctx) => {
    const words = text.split(/\s+/).filter((w) => w.length >= minLength);
    ctx.logger.info('counted words', { words: words.length });
    return { conclusion: 'SUCCESS', output: String(words.length) };
  },
});

const logger = createLogger({ level: 'info' });
const repository = new MemoryRepository();
const pool = new AgentPool({
  repository,
  runtimes: [wordCount, ...builtinRuntimes()],
  concurrency: 2,
  logger,
});

// The graph: echo a sentence, count its long words, report the count.
const wf = workflow();
const source = wf.node(
  'source',
  exec({ command: 'echo', args: ['the quick brown fox jumps over the lazy dog'] }),
);
const count = wf
  .node('count', wordCount.task.partial({ minLength: 4 }))
  .argFrom('text', source)
  .retry({ error: 2 });
wf.node('report', exec({ command: 'sed', args: ['s/^/long words: /'] })).argFrom('stdin', count);

await pool.start();
const run = await repository.start(wf.build());
logger.info('run started', { run: run.id });

// Watch the run until it completes.
for await (const event of repository.watch(run.id, { signal: AbortSignal.timeout(30_000) })) {
  if (event.type === 'node' && event.node.status === 'COMPLETED') {
    const last = event.node.attempts.at(-1);
    logger.info('node completed', {
      node: event.node.spec.name,
      conclusion: last?.conclusion ?? 'unreached',
      output: last ? new TextDecoder().decode(last.output).trim() : '',
    });
  }
}

const done = await repository.inspect(run.id);
logger.info('run completed', { run: run.id, conclusion: done.conclusion });
await pool.stop({ graceMs: 5000 });
await repository.close();
process.exitCode = done.conclusion === 'SUCCESS' ? 0 : 1;
