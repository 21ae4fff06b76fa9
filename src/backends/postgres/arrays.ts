/**
 * A PostgreSQL array literal (`{"a","b",NULL}`) for a batch's parameter, sent
 * as text for the server to read as the parameter's array type (text[],
 * jsonb[], bytea[], bigint[]). pg encodes a JS array the same way, but runs
 * two regular-expression replaces over every element, escaping or not: with
 * batches of hundreds of calls, eight arrays each, that was a tenth of an
 * agent process's busy time and much of its garbage (a CPU and allocation
 * profile of a drain, claim-ahead 500, 2026-11-29). Here an element is only
 * rewritten when it holds a quote or a backslash.
 */
export type ArrayElement = string | number | Buffer | null | undefined;

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

export function pgArray(values: readonly ArrayElement[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new TypeError(`not a finite number: ${v}`);
      out += String(v);
    } else if (typeof v === 'string')
      out += NEEDS_ESCAPE.test(v) ? `"${v.replace(ESCAPED, '\\$&')}"` : `"${v}"`;
    // bytea in its hex form; the backslash is escaped for the array literal.
    else out += `"\\\\x${v.toString('hex')}"`;
  }
  return `${out}}`;
}
