import type { MetadataValues } from '../../../src/gen/adagio/v1/adagio_pb.js';

/** Name → values as a definition list; multi-value entries get one line per value. Text only. */
export function KeyValues({ entries, empty }: { entries: [string, string[]][]; empty?: string }) {
  if (entries.length === 0) return empty ? <p className="muted">{empty}</p> : null;
  return (
    <dl className="kv">
      {entries.map(([k, values]) => (
        <div key={k} className="kv-row">
          <dt>{k}</dt>
          <dd>
            {values.length === 0 ? (
              <span className="muted">(empty)</span>
            ) : (
              values.map((v, i) => (
                // biome-ignore lint/suspicious/noArrayIndexKey: values are positional.
                <code key={i} className="kv-value">
                  {v}
                </code>
              ))
            )}
          </dd>
        </div>
      ))}
    </dl>
  );
}

export function metadataEntries(m: { [k: string]: MetadataValues } | undefined): [string, string[]][] {
  if (!m) return [];
  return Object.keys(m)
    .sort()
    .map((k) => [k, m[k]?.values ?? []]);
}
