import type { NodeState } from '../model/types.js';
import { INPUTS_PREFIX } from '../model/validate.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { DurationError, parseDuration } from './duration.js';

/**
 * Typed runtime arguments. A runtime declares its arguments once (`arg.string()`,
 * `arg.int({ default: 3 })`, …); the same declaration reads them from a node's
 * metadata at run time and writes them into metadata in the workflow builder,
 * so the two cannot disagree about spelling or format.
 *
 * Where an argument comes from, first match wins:
 *  1. `adagio.inputs.<runtime>.<arg>` = an upstream node's name: that node's output;
 *  2. `adagio.arguments.<runtime>.<arg>`;
 *  3. `adagio.runtime.<runtime>.<arg>` (the older spelling);
 *  4. the declared default.
 * A present key with no values counts as unset, except for `strings` arguments.
 */
export type ArgKind = 'string' | 'strings' | 'int' | 'bool' | 'duration' | 'json';
export type Presence = 'required' | 'optional' | 'defaulted';

export interface Arg<Value, Input, P extends Presence = Presence> {
  readonly kind: ArgKind;
  readonly presence: P;
  readonly description?: string;
  /** The default, already in metadata form. */
  readonly defaultValues?: readonly string[];
  /** Metadata values → value; throws an Error whose message says what is wrong. */
  parse(values: readonly string[]): Value;
  /** A builder's value → metadata values; throws InvalidArgumentError. */
  encode(input: Input): string[];
  /** An upstream node's output (UTF-8 text) → metadata values. */
  fromOutput(text: string): string[];
}

// biome-ignore lint/suspicious/noExplicitAny: a map of arguments of any value and input types
export type AnyArg = Arg<any, any, Presence>;
export type ArgSpecs = Record<string, AnyArg>;

export interface ArgOptions<Input> {
  /** Unset is fine: the value is `undefined`. */
  optional?: boolean;
  /** Used when unset; makes the argument optional in the builder. */
  default?: Input;
  description?: string;
}

export type PresenceOf<O> = O extends { default: unknown }
  ? 'defaulted'
  : O extends { optional: true }
    ? 'optional'
    : 'required';

/** The value `run` receives for one argument. */
export type ValueOf<T> =
  T extends Arg<infer V, infer _I, infer P> ? (P extends 'optional' ? V | undefined : V) : never;
/** What the builder accepts for one argument. */
export type InputOf<T> = T extends Arg<infer _V, infer I, infer _P> ? I : never;

/** The typed `args` object a runtime's `run` receives. */
export type ArgValues<A extends ArgSpecs> = { [K in keyof A]: ValueOf<A[K]> };

type RequiredKeys<A extends ArgSpecs> = {
  [K in keyof A]: A[K] extends Arg<infer _V, infer _I, 'required'> ? K : never;
}[keyof A];

/** What a node's builder call takes: required arguments required, the rest optional. */
export type TaskArgs<A extends ArgSpecs> = { [K in RequiredKeys<A>]: InputOf<A[K]> } & {
  [K in Exclude<keyof A, RequiredKeys<A>>]?: InputOf<A[K]>;
};

interface Codec<Value, Input> {
  parse(values: readonly string[]): Value;
  encode(input: Input): string[];
  fromOutput(text: string): string[];
}

function makeArg<Value, Input, const O extends ArgOptions<Input>>(
  kind: ArgKind,
  codec: Codec<Value, Input>,
  options?: O,
): Arg<Value, Input, PresenceOf<O>> {
  let defaultValues: string[] | undefined;
  if (options?.default !== undefined) {
    defaultValues = codec.encode(options.default);
    codec.parse(defaultValues); // a bad default is the runtime author's bug: fail at definition
  }
  const presence = (
    defaultValues ? 'defaulted' : options?.optional ? 'optional' : 'required'
  ) as PresenceOf<O>;
  return { kind, presence, description: options?.description, defaultValues, ...codec };
}

function one(values: readonly string[]): string {
  if (values.length !== 1) throw new Error(`expects one value, got ${values.length}`);
  return values[0]!;
}

/** Output text as one value: a single trailing newline (as `echo` writes) is dropped. */
function stripNewline(text: string): string[] {
  return [text.replace(/\r?\n$/, '')];
}

const stringCodec: Codec<string, string> = {
  parse: one,
  encode: (s) => {
    if (typeof s !== 'string') throw new InvalidArgumentError(`expected a string, got ${typeof s}`);
    return [s];
  },
  fromOutput: stripNewline,
};

const stringsCodec: Codec<string[], readonly string[]> = {
  parse: (values) => [...values],
  encode: (list) => {
    if (!Array.isArray(list) || list.some((s) => typeof s !== 'string'))
      throw new InvalidArgumentError('expected a list of strings');
    return [...list];
  },
  // One value per line of the upstream output.
  fromOutput: (text) => (text === '' ? [] : text.replace(/\r?\n$/, '').split(/\r?\n/)),
};

const intCodec: Codec<number, number> = {
  parse: (values) => {
    const s = one(values).trim();
    const n = Number(s);
    if (!/^[+-]?\d+$/.test(s) || !Number.isSafeInteger(n)) throw new Error(`"${s}" is not a whole number`);
    return n;
  },
  encode: (n) => {
    if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`${n} is not a whole number`);
    return [String(n)];
  },
  fromOutput: (text) => [text.trim()],
};

const BOOLS: Record<string, boolean> = {
  true: true,
  yes: true,
  '1': true,
  false: false,
  no: false,
  '0': false,
};
const boolCodec: Codec<boolean, boolean> = {
  parse: (values) => {
    const s = one(values).trim().toLowerCase();
    const b = BOOLS[s];
    if (b === undefined) throw new Error(`"${s}" is not true/false`);
    return b;
  },
  encode: (b) => [b ? 'true' : 'false'],
  fromOutput: (text) => [text.trim()],
};

/**
 * A param reference as a workflow's metadata carries it (`{{params.NAME}}`,
 * spaces inside the braces allowed): the same shape substituteParams in
 * model/workflows.ts replaces when a run starts.
 */
const PARAM_REFERENCE = /\{\{\s*params\.[^\s}]*\s*\}\}/;

const durationCodec: Codec<number, string | number> = {
  parse: (values) => {
    try {
      return parseDuration(one(values));
    } catch (e) {
      throw new Error((e as Error).message);
    }
  },
  encode: (d) => {
    if (typeof d === 'number') {
      // Only a whole number prints without an exponent: 1e-7 would be written "1e-7ms", which parseDuration
      // refuses at run time. A fraction of a ms can still be written as a string ("1.5ms").
      if (!Number.isSafeInteger(d) || d < 0)
        throw new InvalidArgumentError(
          `${d} is not a whole number of ms from 0 (write a fraction as a string, e.g. "1.5ms")`,
        );
      return [`${d}ms`];
    }
    if (typeof d !== 'string')
      throw new InvalidArgumentError(`expected a duration string or a number of ms, got ${typeof d}`);
    // A run substitutes the param before the runtime parses the value, so only then can it be checked.
    if (PARAM_REFERENCE.test(d)) return [d];
    try {
      parseDuration(d);
    } catch (e) {
      if (e instanceof DurationError) throw new InvalidArgumentError(e.message);
      throw e;
    }
    return [d];
  },
  fromOutput: (text) => [text.trim()],
};

function jsonCodec<T>(): Codec<T, T> {
  return {
    parse: (values) => {
      const s = one(values);
      try {
        return JSON.parse(s) as T;
      } catch (e) {
        throw new Error(`not valid JSON: ${(e as Error).message}`);
      }
    },
    encode: (v) => {
      const s = JSON.stringify(v);
      if (s === undefined) throw new InvalidArgumentError('value cannot be written as JSON');
      return [s];
    },
    fromOutput: (text) => [text],
  };
}

/** Argument declarations. Values `run` receives: string, string[], number, boolean, ms, parsed JSON. */
export const arg = {
  string: <const O extends ArgOptions<string> = Record<never, never>>(o?: O) =>
    makeArg('string', stringCodec, o),
  strings: <const O extends ArgOptions<readonly string[]> = Record<never, never>>(o?: O) =>
    makeArg('strings', stringsCodec, o),
  int: <const O extends ArgOptions<number> = Record<never, never>>(o?: O) => makeArg('int', intCodec, o),
  bool: <const O extends ArgOptions<boolean> = Record<never, never>>(o?: O) => makeArg('bool', boolCodec, o),
  /**
   * Milliseconds at run time; `"1.5s"`, `"2m"`, a whole number of ms, or a
   * string with a param reference (`${timeout}`) in the builder.
   */
  duration: <const O extends ArgOptions<string | number> = Record<never, never>>(o?: O) =>
    makeArg('duration', durationCodec, o),
  /** Parsed with JSON.parse; `T` is trusted, not checked. */
  json: <T = unknown, const O extends ArgOptions<T> = Record<never, never>>(o?: O) =>
    makeArg('json', jsonCodec<T>(), o),
};

export const ARGUMENTS_PREFIX = 'adagio.arguments.';
export const LEGACY_ARGUMENTS_PREFIX = 'adagio.runtime.';
export { INPUTS_PREFIX };

export function argumentKey(runtime: string, name: string): string {
  return `${ARGUMENTS_PREFIX}${runtime}.${name}`;
}
export function legacyArgumentKey(runtime: string, name: string): string {
  return `${LEGACY_ARGUMENTS_PREFIX}${runtime}.${name}`;
}
export function inputKey(runtime: string, name: string): string {
  return `${INPUTS_PREFIX}${runtime}.${name}`;
}

/** An argument is missing or does not parse; the message names it and says how to fix it. */
export class ArgumentError extends Error {
  constructor(
    readonly runtime: string,
    readonly argument: string,
    message: string,
  ) {
    super(message);
    this.name = 'ArgumentError';
  }
}

const decoder = new TextDecoder();

/** Reads every declared argument of `runtime` from the node; ArgumentError on the first problem. */
export function resolveArgs<A extends ArgSpecs>(
  runtime: string,
  specs: A,
  node: Pick<NodeState, 'spec' | 'inputs'>,
): ArgValues<A> {
  const metadata = node.spec.metadata;
  checkUnknown(runtime, specs, Object.keys(metadata));
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const found = lookup(runtime, name, spec, node);
    if (!found) {
      if (spec.defaultValues) out[name] = spec.parse(spec.defaultValues);
      else if (spec.presence === 'optional') out[name] = undefined;
      else
        throw new ArgumentError(
          runtime,
          name,
          `missing required argument "${name}" of runtime "${runtime}": set metadata "${argumentKey(runtime, name)}"` +
            ` or map an upstream node's output with "${inputKey(runtime, name)}"`,
        );
      continue;
    }
    try {
      out[name] = spec.parse(found.values);
    } catch (e) {
      throw new ArgumentError(
        runtime,
        name,
        `argument "${name}" of runtime "${runtime}" (from ${found.source}): ${(e as Error).message}`,
      );
    }
  }
  return out as ArgValues<A>;
}

/**
 * Whether metadata values set an argument: a present key with no values counts
 * as unset, except for a `strings` argument, whose value is then the empty
 * list. The builder checks required arguments with the same rule.
 */
export function givesValue(spec: AnyArg, values: readonly string[] | undefined): values is readonly string[] {
  return values !== undefined && (values.length > 0 || spec.kind === 'strings');
}

function lookup(
  runtime: string,
  name: string,
  spec: AnyArg,
  node: Pick<NodeState, 'spec' | 'inputs'>,
): { values: readonly string[]; source: string } | undefined {
  const metadata = node.spec.metadata;
  const mapped = metadata[inputKey(runtime, name)];
  if (mapped && mapped.length > 0) {
    if (mapped.length !== 1)
      throw new ArgumentError(
        runtime,
        name,
        `argument "${name}" of runtime "${runtime}": "${inputKey(runtime, name)}" must name one upstream node, got ${mapped.length}`,
      );
    const upstream = mapped[0]!;
    const bytes = node.inputs[upstream];
    if (bytes !== undefined)
      return { values: spec.fromOutput(decoder.decode(bytes)), source: `the output of node "${upstream}"` };
    // A start checks that `upstream` is a direct upstream node (rule 1): it gave no input because it did not
    // succeed, and a trigger (all_done, one_failed...) ran this node anyway (rule 14). An optional or defaulted
    // argument is then unset (its default, or a value of its own below); a required one cannot be.
    if (spec.presence === 'required')
      throw new ArgumentError(
        runtime,
        name,
        `argument "${name}" of runtime "${runtime}" is mapped to the output of node "${upstream}", which did not succeed: it has no output for this node`,
      );
  }
  for (const key of [argumentKey(runtime, name), legacyArgumentKey(runtime, name)]) {
    const values = metadata[key];
    if (givesValue(spec, values)) return { values, source: `metadata "${key}"` };
  }
  return undefined;
}

/** A misspelt argument would otherwise be silently ignored; name it instead. */
function checkUnknown(runtime: string, specs: ArgSpecs, keys: string[]): void {
  for (const prefix of [ARGUMENTS_PREFIX, LEGACY_ARGUMENTS_PREFIX, INPUTS_PREFIX]) {
    const own = `${prefix}${runtime}.`;
    for (const key of keys) {
      if (!key.startsWith(own)) continue;
      const name = key.slice(own.length);
      if (!Object.hasOwn(specs, name)) {
        const known = Object.keys(specs);
        throw new ArgumentError(
          runtime,
          name,
          `unknown argument "${name}" (metadata "${key}"): runtime "${runtime}" takes ${known.length ? known.map((k) => `"${k}"`).join(', ') : 'no arguments'}`,
        );
      }
    }
  }
}
