import { type ChangeEvent, type DragEvent, useMemo, useState } from 'react';
import type { GraphSpec } from '../../../src/model/types.js';
import { validateGraph } from '../../../src/model/validate.js';
import { graphFromJsonText, graphToProto } from '../../../src/model/wire.js';
import { api, errorMessage } from '../api/client.js';
import { navigate, runPath, useTitle } from '../router.js';
import { rememberStartWarnings } from '../state/startWarnings.js';

const EXAMPLE = `{
  "nodes": [
    { "name": "fetch", "runtime": "debug", "metadata": { "adagio.arguments.debug.sleep": { "values": ["1s"] } } },
    { "name": "parse", "runtime": "debug", "metadata": { "adagio.arguments.debug.sleep": { "values": ["1s"] } } },
    { "name": "report", "runtime": "exec",
      "metadata": { "adagio.arguments.exec.command": { "values": ["echo"] },
                    "adagio.arguments.exec.args": { "values": ["done"] } },
      "retry": { "fail": { "max_attempts": 2 } } }
  ],
  "edges": [
    { "source": "fetch", "destination": "parse" },
    { "source": "parse", "destination": "report" }
  ]
}
`;

// Files bigger than this are refused before reading: the API rejects them anyway.
const MAX_FILE_BYTES = 16 * 1024 * 1024;

type Checked = { spec: GraphSpec; problems: [] } | { spec: undefined; problems: string[] };

/** The same checks the server makes (it shares validate.ts), so most mistakes show while typing. */
function check(text: string): Checked {
  try {
    const spec = graphFromJsonText(text);
    const problems = validateGraph(spec);
    return problems.length === 0 ? { spec, problems: [] } : { spec: undefined, problems };
  } catch (e) {
    return { spec: undefined, problems: [errorMessage(e)] };
  }
}

/** Start a run from a graph JSON, pasted or uploaded; problems are listed under the editor. */
export function StartRun() {
  useTitle('Start a run');
  const [text, setText] = useState('');
  const [serverError, setServerError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const checked = useMemo(() => (text.trim() ? check(text) : undefined), [text]);

  const edit = (v: string) => {
    setText(v);
    setServerError(undefined);
  };
  const readFile = async (file: File | undefined) => {
    if (!file) return;
    if (file.size > MAX_FILE_BYTES) {
      setServerError(`${file.name} is ${file.size} bytes; the limit is ${MAX_FILE_BYTES}`);
      return;
    }
    edit(await file.text());
  };
  const onFile = (e: ChangeEvent<HTMLInputElement>) => void readFile(e.target.files?.[0]);
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    void readFile(e.dataTransfer.files[0]);
  };
  const start = async () => {
    if (!checked?.spec) return;
    setBusy(true);
    setServerError(undefined);
    try {
      const res = await api.start({ spec: graphToProto(checked.spec) });
      if (res.run) {
        rememberStartWarnings(res.run.id, res.warnings);
        navigate(runPath(res.run.id));
      }
    } catch (e) {
      setServerError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };

  const problems = [...(checked?.problems ?? []), ...(serverError ? [serverError] : [])];
  return (
    <div className="page start-page">
      <h1>Start a run</h1>
      <p className="muted">
        Paste a graph spec (the proto3 JSON form: <code>nodes</code> and <code>edges</code>), or choose or drop a file.
      </p>
      <div className="start-tools">
        <label className="button">
          Upload JSON…
          <input type="file" accept=".json,application/json" onChange={onFile} className="visually-hidden" />
        </label>
        <button type="button" onClick={() => edit(EXAMPLE)}>
          Insert example
        </button>
      </div>
      <textarea
        className="graph-editor"
        name="graph"
        aria-label="graph JSON"
        spellCheck={false}
        value={text}
        placeholder='{"nodes": [{"name": "a", "runtime": "debug"}], "edges": []}'
        onChange={(e) => edit(e.target.value)}
        onDragOver={(e) => e.preventDefault()}
        onDrop={onDrop}
      />
      {problems.length > 0 && (
        <ul className="problems" aria-label="problems">
          {problems.map((p) => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      )}
      {checked?.spec && !serverError && (
        <p className="ok">
          Valid graph: {checked.spec.nodes.length} nodes, {checked.spec.edges.length} edges.
        </p>
      )}
      <button type="button" className="primary" disabled={!checked?.spec || busy} onClick={start}>
        {busy ? 'Starting…' : 'Start run'}
      </button>
    </div>
  );
}
