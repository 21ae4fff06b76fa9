import { create } from '@bufbuild/protobuf';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import { LIMITS } from '../model/limits.js';
import {
  inputsWithin,
  nodeToProto,
  runConclusionToProto,
  runStatusToProto,
  runToProto,
  withOutputBudget,
} from '../model/wire.js';
import { TooLargeError } from '../protocol/errors.js';
import type { Repository, WatchEvent } from '../protocol/repository.js';

export interface WatchStreamOptions {
  signal: AbortSignal;
  /** Bytes queued for a reader that does not keep up before the watch is cut off. */
  maxBufferBytes?: number;
}

/**
 * A run's Watch as wire messages, shared by the RPC and the NDJSON route.
 *
 * Cost stays within the run's size: the first message applies the read
 * output budget (LIMITS.maxReadOutputBytes), and each node message carries
 * only the attempts not sent before (`attempts_from`), so every attempt
 * crosses once instead of once per later transition.
 *
 * A slow or stalled reader cannot grow the process: events are drained from
 * the repository at once into a queue bounded in bytes, and a reader that
 * lets it pass `maxBufferBytes` is cut off with RESOURCE_EXHAUSTED.
 */
export function watchMessages(
  repo: Repository,
  runId: string,
  o: WatchStreamOptions,
): AsyncIterable<cp.WatchResponse> {
  const max = o.maxBufferBytes ?? LIMITS.maxWatchBufferBytes;
  const inner = new AbortController();
  const stop = () => inner.abort();
  o.signal.addEventListener('abort', stop, { once: true });
  const events = repo.watch(runId, { signal: inner.signal });
  const sent = new Map<string, number>();
  const queue: { msg: cp.WatchResponse; bytes: number }[] = [];
  let queued = 0;
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const toMessage = (ev: WatchEvent): { msg: cp.WatchResponse; bytes: number } => {
    if (ev.type === 'snapshot') {
      const run = withOutputBudget(ev.run, LIMITS.maxReadOutputBytes);
      let bytes = 1024;
      for (const n of run.nodes) {
        sent.set(n.spec.name, n.attempts.length);
        for (const a of n.attempts) bytes += a.output.byteLength + 256;
      }
      return { msg: create(cp.WatchResponseSchema, { run: runToProto(run) }), bytes };
    }
    if (ev.type === 'output') {
      const output = { nodeName: ev.node, attempt: ev.attempt, offset: BigInt(ev.offset), chunk: ev.chunk };
      return { msg: create(cp.WatchResponseSchema, { output }), bytes: 256 + ev.chunk.byteLength };
    }
    const name = ev.node.spec.name;
    const from = Math.min(sent.get(name) ?? 0, ev.node.attempts.length);
    const fresh = ev.node.attempts.slice(from);
    sent.set(name, ev.node.attempts.length);
    let bytes = 1024;
    for (const a of fresh) bytes += a.output.byteLength + 256;
    // A node's inputs within the read budget, as a snapshot keeps them (a wide fan-in of big outputs).
    const inputs = inputsWithin(ev.node, LIMITS.maxReadOutputBytes);
    for (const v of Object.values(inputs.node.inputs)) bytes += v.byteLength;
    const msg = create(cp.WatchResponseSchema, {
      node: nodeToProto({ ...ev.node, attempts: fresh, ...inputs.node }),
      runStatus: runStatusToProto(ev.runStatus),
      runConclusion: runConclusionToProto(ev.runConclusion),
      attemptsFrom: from,
    });
    return { msg, bytes };
  };

  // The pump: drains the repository's events as they come, whatever the reader does.
  const pump = (async () => {
    try {
      for await (const ev of events) {
        const item = toMessage(ev);
        queue.push(item);
        queued += item.bytes;
        if (queued > max) {
          // Cut off now: what is queued is dropped with it, so memory is freed at once.
          const behind = queued;
          queue.length = 0;
          queued = 0;
          throw new TooLargeError(
            `watch of run ${runId} cut off: the reader fell ${behind} bytes behind (the limit is ${max}); reconnect to resume from the run's current state`,
          );
        }
        notify();
      }
    } catch (e) {
      if (!inner.signal.aborted) failure = e;
      inner.abort();
    } finally {
      ended = true;
      notify();
    }
  })();

  return {
    async *[Symbol.asyncIterator]() {
      try {
        while (true) {
          const item = queue.shift();
          if (item) {
            queued -= item.bytes;
            yield item.msg;
            continue;
          }
          if (ended) {
            if (failure !== undefined && !o.signal.aborted) throw failure;
            return;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        inner.abort();
        o.signal.removeEventListener('abort', stop);
        await pump;
      }
    },
  };
}
