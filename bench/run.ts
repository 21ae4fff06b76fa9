/**
 * `npm run bench [-- NAME...]`: runs the benchmark suites (all by default).
 * Each suite module exports `run()` and prints its own figures.
 * `npm run bench -- peers|width [ARGS...]` runs that one suite with its own arguments.
 */
type Suite = { run(args?: string[]): Promise<void> };
const suites: Record<string, () => Promise<Suite>> = {
  memory: () => import('./memory.js'),
  etcd: () => import('./etcd.js' as string),
  postgres: () => import('./postgres.js' as string),
  dynamodb: () => import('./dynamodb.js' as string),
  api: () => import('./api.js' as string),
  cli: () => import('./cli.js' as string),
  peers: () => import('./peers.js'),
  width: () => import('./width.js'),
};
/** Suites that take arguments: the run's other words are theirs, and they run only when named. */
const withArgs = new Set(['peers', 'width']);

const argv = process.argv.slice(2);
const [wanted, args] = withArgs.has(argv[0] ?? '') ? [[argv[0]!], argv.slice(1)] : [argv, []];
const unknown = wanted.filter((w) => !(w in suites));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(suites).join(', ')}`);
  process.exit(2);
}
let failed = false;
for (const name of wanted.length > 0 ? wanted : Object.keys(suites).filter((s) => !withArgs.has(s))) {
  let mod: Suite;
  try {
    mod = await suites[name]!();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && wanted.length === 0) continue;
    throw e;
  }
  try {
    await mod.run(args);
  } catch (e) {
    failed = true;
    console.error(`benchmark ${name} failed: ${(e as Error).message}`);
  }
}
process.exit(failed ? 1 : 0);
