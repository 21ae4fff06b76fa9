/**
 * `npm run bench [-- NAME...]`: runs the benchmark suites (all by default).
 * Each suite module exports `run()` and prints its own figures.
 */
const suites: Record<string, () => Promise<{ run(): Promise<void> }>> = {
  memory: () => import('./memory.js'),
  etcd: () => import('./etcd.js' as string),
  postgres: () => import('./postgres.js' as string),
  dynamodb: () => import('./dynamodb.js' as string),
  api: () => import('./api.js' as string),
  cli: () => import('./cli.js' as string),
};

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(w in suites));
if (unknown.length > 0) {
  console.error(`unknown benchmark ${unknown.join(', ')}; choose from ${Object.keys(suites).join(', ')}`);
  process.exit(2);
}
let failed = false;
for (const name of wanted.length > 0 ? wanted : Object.keys(suites)) {
  let mod: { run(): Promise<void> };
  try {
    mod = await suites[name]!();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && wanted.length === 0) continue;
    throw e;
  }
  try {
    await mod.run();
  } catch (e) {
    failed = true;
    console.error(`benchmark ${name} failed: ${(e as Error).message}`);
  }
}
process.exit(failed ? 1 : 0);
