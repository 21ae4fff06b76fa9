/**
 * The 7-node example DAG (a→c, a→d, b→d, b→f, c→e, d→e, e→g, f→g) written with
 * the workflow builder, mixing `exec` and `debug` nodes and passing outputs
 * along as arguments. Run it to print the graph's JSON (as in
 * examples/workflows/seven-node.json):
 *
 *   npx tsx examples/workflow.ts > graph.json
 */
import { pathToFileURL } from 'node:url';
import { debug, exec, type Workflow, workflow } from '../src/index.js';

export function sevenNodeWorkflow(): Workflow {
  const wf = workflow();
  const a = wf.node('a', exec({ command: 'echo', args: ['alpha'] })).retry({ error: 2 });
  const b = wf.node('b', debug());
  // c's standard input is a's output; e upper-cases c's output; g echoes e's output.
  const c = wf.node('c', exec({ command: 'cat' })).argFrom('stdin', a);
  const d = wf.node('d', debug({ sleep: '50ms' })).dependsOn(a, b);
  const e = wf
    .node('e', exec({ command: 'tr', args: ['a-z', 'A-Z'] }))
    .argFrom('stdin', c)
    .dependsOn(d);
  const f = wf.node('f', debug({ sleep: '100ms' })).dependsOn(b);
  wf.node('g', exec.partial({ command: 'echo' }))
    .argFrom('args', e)
    .dependsOn(f);
  return wf;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.stdout.write(`${JSON.stringify(sevenNodeWorkflow().toJSON(), null, 2)}\n`);
}
