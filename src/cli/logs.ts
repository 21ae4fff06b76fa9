import type { NodeState, Run } from '../model/types.js';
import type { Context } from './commands.js';
import { CliError, EXIT } from './errors.js';

/**
 * `adagio runs logs RUN NODE [--attempt N] [-f]`: a node attempt's output as
 * text. Without --attempt: the running attempt (what it streamed so far), else
 * the last one. With -f: follows the output live (the watch's output events)
 * until the attempt ends, and without --attempt on through retries until the
 * node completes.
 */
export interface LogsOptions {
  /** 1-based; unset: the current or last attempt. */
  attempt?: number;
  follow: boolean;
}

export async function runsLogs(
  ctx: Context,
  runId: string,
  name: string,
  opts: LogsOptions,
): Promise<number> {
  const printer = new Printer(ctx);
  if (!opts.follow) {
    const node = nodeOf(await ctx.client().inspect(runId), name);
    const n = opts.attempt ?? currentAttempt(node);
    checkAttempt(node, n, opts.attempt !== undefined);
    await fetchOmittedOutput(ctx, runId, node, n);
    printer.show(n, bytesOf(node, n));
    return printer.end();
  }
  let target = opts.attempt;
  let done = false;
  /** Prints what the node's state says of the target attempt; true once the follow is over. */
  const settle = (node: NodeState): boolean => {
    target ??= currentAttempt(node);
    printer.show(target, bytesOf(node, target));
    if (node.attempts.length < target) return false; // still to run, or running
    // The attempt ended: with --attempt that is the end; else follow the retry, if any.
    if (opts.attempt !== undefined || node.status === 'COMPLETED') return true;
    target++;
    printer.show(target, new Uint8Array());
    return false;
  };
  for await (const ev of ctx.client().watch(runId, { signal: ctx.signal })) {
    if (ev.type === 'snapshot') {
      const node = nodeOf(ev.run, name);
      if (opts.attempt !== undefined) checkAttempt(node, opts.attempt, true, true);
      await fetchOmittedOutput(ctx, runId, node, target ?? currentAttempt(node));
      done = settle(node);
    } else if (ev.type === 'output') {
      if (ev.node === name && ev.attempt === target) printer.at(ev.attempt, ev.offset, ev.chunk);
    } else if (ev.node.spec.name === name) done = settle(ev.node);
    if (done) break;
  }
  if (!done && !ctx.signal?.aborted) {
    const node = nodeOf(await ctx.client().inspect(runId), name);
    await fetchOmittedOutput(ctx, runId, node, target ?? currentAttempt(node));
    settle(node);
  }
  return ctx.signal?.aborted ? EXIT.interrupted : printer.end();
}

function nodeOf(run: Run, name: string): NodeState {
  const node = run.nodes.find((n) => n.spec.name === name);
  if (!node) throw new CliError(`run ${run.id} has no node "${name}"`, EXIT.usage);
  return node;
}

/** The running attempt's number, or the last recorded one (1 when there is none yet). */
function currentAttempt(node: NodeState): number {
  return node.status === 'RUNNING' ? node.attempts.length + 1 : Math.max(1, node.attempts.length);
}

function checkAttempt(node: NodeState, n: number, asked: boolean, future = false): void {
  const known = node.attempts.length + (node.status === 'RUNNING' ? 1 : 0);
  if (asked && n > known && !(future && node.status !== 'COMPLETED'))
    throw new CliError(
      `node "${node.spec.name}" has ${known} attempt${known === 1 ? '' : 's'}${future ? ' and will have no more' : ''}`,
      EXIT.usage,
    );
}

/**
 * A read (inspect, a watch's snapshot) leaves attempt outputs out past its
 * budget (`omittedOutputBytes`): attempt `n`'s is fetched on its own then,
 * into the attempt itself, which the watch's later node events share.
 */
async function fetchOmittedOutput(ctx: Context, runId: string, node: NodeState, n: number): Promise<void> {
  const attempt = node.attempts[n - 1];
  if (attempt?.omittedOutputBytes === undefined) return;
  attempt.output = await ctx.client().attemptOutput(runId, node.spec.name, n);
  delete attempt.omittedOutputBytes;
}

/** The output of attempt `n` as the node state knows it: recorded, or streamed so far. */
function bytesOf(node: NodeState, n: number): Uint8Array {
  if (n <= node.attempts.length) return node.attempts[n - 1]!.output;
  if (n === node.attempts.length + 1 && node.status === 'RUNNING') return node.liveOutput ?? new Uint8Array();
  return new Uint8Array();
}

/**
 * Writes each attempt's bytes once, in order, as UTF-8 text (a character split
 * across chunks is held until it completes). Output events may repeat or
 * overlap the node's state: only bytes past what was printed are written.
 */
class Printer {
  private attempt = 0;
  private printed = 0;
  private decoder = new TextDecoder();
  private lastChar = '\n';

  constructor(private readonly ctx: Context) {}

  show(attempt: number, bytes: Uint8Array): void {
    this.at(attempt, 0, bytes);
  }

  at(attempt: number, offset: number, chunk: Uint8Array): void {
    if (attempt !== this.attempt) {
      if (this.attempt !== 0) {
        this.flush();
        this.ctx.io.stderr.write(`${this.lastChar === '\n' ? '' : '\n'}--- attempt ${attempt} ---\n`);
        this.lastChar = '\n';
      }
      this.attempt = attempt;
      this.printed = 0;
      this.decoder = new TextDecoder();
    }
    const end = offset + chunk.byteLength;
    if (offset > this.printed || end <= this.printed) return; // a gap (the state will fill it) or a repeat
    this.write(this.decoder.decode(chunk.subarray(this.printed - offset), { stream: true }));
    this.printed = end;
  }

  end(): number {
    this.flush();
    return EXIT.ok;
  }

  private flush(): void {
    this.write(this.decoder.decode());
  }

  private write(text: string): void {
    if (!text) return;
    this.ctx.io.stdout.write(text);
    this.lastChar = text[text.length - 1]!;
  }
}
