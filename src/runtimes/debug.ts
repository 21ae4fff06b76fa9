import { arg } from './args.js';
import { type DefinedRuntime, defineRuntime } from './define.js';
import { formatDuration } from './duration.js';
import type { RuntimeResult } from './runtime.js';
import { abortReason, sleep } from './sleep.js';

/**
 * `debug`: a runtime for trying graphs and testing agents. It sleeps if asked,
 * then ends with `conclusion` — unless one of its `chances` ("0.5 fail",
 * "0.1 panic") is drawn first. One random number is drawn per attempt, and
 * only when chances are given, so a seeded generator makes runs replayable.
 * `panic` makes the runtime throw, as a buggy runtime would.
 */
export const DEBUG_ARGS = {
  conclusion: arg.string({ default: 'success', description: 'success, fail, error or panic' }),
  sleep: arg.duration({ optional: true, description: 'how long to wait before concluding' }),
  chances: arg.strings({ optional: true, description: 'probability and outcome, e.g. "0.5 fail"' }),
};

export type DebugOutcome = 'success' | 'fail' | 'error' | 'panic';
const OUTCOMES: readonly string[] = ['success', 'fail', 'error', 'panic'];
const RESULT: Record<Exclude<DebugOutcome, 'panic'>, RuntimeResult['conclusion']> = {
  success: 'SUCCESS',
  fail: 'FAIL',
  error: 'ERROR',
};

export interface DebugRuntimeOptions {
  /** Numbers in [0, 1); Math.random by default. Use seededRandom(n) for replayable runs. */
  random?: () => number;
}

export interface Chance {
  probability: number;
  outcome: DebugOutcome;
}

/** Parses `"0.5 fail"` lines; throws an Error naming the bad entry. */
export function parseChances(lines: readonly string[]): Chance[] {
  let total = 0;
  const chances = lines.map((line) => {
    const m = /^\s*(\d*\.?\d+)\s+(\w+)\s*$/.exec(line);
    if (!m) throw new Error(`"${line}" is not "<probability> <outcome>", e.g. "0.5 fail"`);
    const probability = Number(m[1]);
    const outcome = m[2]!.toLowerCase();
    if (!(probability >= 0 && probability <= 1))
      throw new Error(`"${line}": probability must be from 0 to 1`);
    if (!OUTCOMES.includes(outcome))
      throw new Error(`"${line}": outcome must be one of ${OUTCOMES.join(', ')}`);
    total += probability;
    return { probability, outcome: outcome as DebugOutcome };
  });
  if (total > 1 + 1e-9) throw new Error(`chances add up to ${Number(total.toFixed(6))}, more than 1`);
  return chances;
}

/** The outcome a draw in [0, 1) picks: the chances in order, each taking its share, then the fallback. */
export function pickOutcome(draw: number, chances: readonly Chance[], fallback: DebugOutcome): DebugOutcome {
  let edge = 0;
  for (const c of chances) {
    edge += c.probability;
    if (draw < edge) return c.outcome;
  }
  return fallback;
}

export function debugRuntime(options: DebugRuntimeOptions = {}): DefinedRuntime<typeof DEBUG_ARGS> {
  const random = options.random ?? Math.random;
  return defineRuntime({
    name: 'debug',
    args: DEBUG_ARGS,
    async run(args, ctx) {
      const fallback = args.conclusion.trim().toLowerCase();
      if (!OUTCOMES.includes(fallback))
        return {
          conclusion: 'ERROR',
          output: `argument "conclusion" of runtime "debug": "${args.conclusion}" is not one of ${OUTCOMES.join(', ')}`,
        };
      let chances: Chance[] = [];
      try {
        chances = parseChances(args.chances ?? []);
      } catch (e) {
        return {
          conclusion: 'ERROR',
          output: `argument "chances" of runtime "debug": ${(e as Error).message}`,
        };
      }
      const notes: string[] = [];
      let outcome = fallback as DebugOutcome;
      if (chances.length > 0) {
        const draw = random();
        outcome = pickOutcome(draw, chances, outcome);
        notes.push(
          `drew ${draw.toFixed(4)} against ${chances.map((c) => `${c.probability} ${c.outcome}`).join(', ')}`,
        );
      }
      if (args.sleep !== undefined && args.sleep > 0) {
        const slept = await sleep(args.sleep, ctx.signal);
        if (!slept)
          return {
            conclusion: 'ERROR',
            output: `debug: interrupted while sleeping ${formatDuration(args.sleep)}: ${abortReason(ctx.signal)}`,
          };
        notes.push(`slept ${formatDuration(args.sleep)}`);
      }
      const detail = notes.length ? ` (${notes.join('; ')})` : '';
      if (outcome === 'panic') throw new Error(`debug: panic${detail}`);
      return { conclusion: RESULT[outcome], output: `debug: ${outcome}${detail}` };
    },
  });
}
