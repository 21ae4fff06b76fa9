import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type { Logger } from '../log.js';
import { unservedRuntimeWarnings } from '../model/explain.js';
import {
  agentToProto,
  graphFromProto,
  nodeToProto,
  runConclusionToProto,
  runStatusToProto,
  runSummaryToProto,
  runToProto,
  statsToProto,
} from '../model/wire.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import type { ListRunsQuery, Repository, WatchEvent } from '../protocol/repository.js';
import { toConnectError } from './errors.js';
import type { ApiMetrics } from './metrics.js';

/**
 * The control plane: each method is a thin translation between the wire
 * types and the Repository protocol. Validation and state live in the
 * backend; this layer only checks what the protocol cannot see (ids present,
 * ns windows well formed).
 */
export function controlPlaneService(
  repo: Repository,
  logger: Logger,
  metrics?: ApiMetrics,
): ServiceImpl<typeof cp.ControlPlane> {
  const guard = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (e) {
      throw toConnectError(e, logger);
    }
  };
  return {
    stats: () =>
      guard(async () => create(cp.StatsResponseSchema, { stats: statsToProto(await repo.stats()) })),
    start: (req) =>
      guard(async () => {
        if (!req.spec) throw new InvalidArgumentError('spec is required');
        const spec = graphFromProto(req.spec);
        const run = await repo.start(spec);
        metrics?.runsStarted.inc();
        logger.debug('run started', { run: run.id, nodes: run.nodes.length });
        const warnings = unservedRuntimeWarnings(spec.nodes, await repo.listAgents());
        return create(cp.StartResponseSchema, { run: runToProto(run), warnings });
      }),
    listRuns: (req) =>
      guard(async () => {
        const page = await repo.listRuns(listQueryFromNs(req.startNs, req.finishNs, req.limit, req.cursor));
        return create(cp.ListRunsResponseSchema, {
          runs: page.runs.map(runSummaryToProto),
          nextCursor: page.nextCursor ?? '',
        });
      }),
    inspect: (req) =>
      guard(async () =>
        create(cp.InspectResponseSchema, { run: runToProto(await repo.inspect(requireId(req.id))) }),
      ),
    listAgents: () =>
      guard(async () =>
        create(cp.ListAgentsResponseSchema, { agents: (await repo.listAgents()).map(agentToProto) }),
      ),
    cancel: (req) =>
      guard(async () =>
        create(cp.CancelResponseSchema, { run: runToProto(await repo.cancel(requireId(req.id))) }),
      ),
    async *watch(req, ctx) {
      try {
        for await (const ev of repo.watch(requireId(req.id), { signal: ctx.signal }))
          yield watchEventToProto(ev);
      } catch (e) {
        if (ctx.signal.aborted) return;
        throw toConnectError(e, logger);
      }
    },
  };
}

export function watchEventToProto(ev: WatchEvent): cp.WatchResponse {
  if (ev.type === 'snapshot') return create(cp.WatchResponseSchema, { run: runToProto(ev.run) });
  if (ev.type === 'output')
    return create(cp.WatchResponseSchema, {
      output: { nodeName: ev.node, attempt: ev.attempt, offset: BigInt(ev.offset), chunk: ev.chunk },
    });
  return create(cp.WatchResponseSchema, {
    node: nodeToProto(ev.node),
    runStatus: runStatusToProto(ev.runStatus),
    runConclusion: runConclusionToProto(ev.runConclusion),
  });
}

export function requireId(id: string): string {
  if (!id) throw new InvalidArgumentError('run id is required');
  return id;
}

const NS_PER_MS = 1_000_000n;

/** The wire's ns window (0 = unbounded) as the protocol's ms window. */
export function listQueryFromNs(
  startNs: bigint,
  finishNs: bigint,
  limit: number,
  cursor: string,
): ListRunsQuery {
  if (startNs < 0n || finishNs < 0n)
    throw new InvalidArgumentError('start_ns and finish_ns must not be negative');
  if (limit < 0) throw new InvalidArgumentError('limit must not be negative');
  const query: ListRunsQuery = {};
  if (startNs > 0n) query.since = Number(startNs / NS_PER_MS);
  // Exclusive upper bound: round up so a run created within the last partial ms stays excluded only if it should.
  if (finishNs > 0n) query.until = Number((finishNs + NS_PER_MS - 1n) / NS_PER_MS);
  if (limit > 0) query.limit = limit;
  if (cursor) query.cursor = cursor;
  return query;
}
