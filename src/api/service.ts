import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type * as pb from '../gen/adagio/v1/adagio_pb.js';
import type { Logger } from '../log.js';
import { unservedRuntimeWarnings } from '../model/explain.js';
import { LIMITS } from '../model/limits.js';
import { planRerun, type RerunPlan } from '../model/resume.js';
import type { Run } from '../model/types.js';
import {
  agentToProto,
  graphFromProto,
  runSummaryToProto,
  runToProto,
  statsToProto,
  withOutputBudget,
} from '../model/wire.js';
import { InvalidArgumentError, NotFoundError } from '../protocol/errors.js';
import type { ListRunsQuery, Repository } from '../protocol/repository.js';
import { Admission } from './admission.js';
import { toConnectError } from './errors.js';
import type { ApiMetrics } from './metrics.js';
import { scheduleMethods } from './schedule-service.js';
import { watchMessages } from './watch-stream.js';
import { runFilterFromProto, startOptionsFromProto, workflowMethods } from './workflow-service.js';

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
  admission: Admission = new Admission(repo),
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
        const options = startOptionsFromProto(req);
        if (!req.spec && !options.workflow) throw new InvalidArgumentError('spec or workflow is required');
        const spec = req.spec ? graphFromProto(req.spec) : undefined;
        // A workflow's size is its latest (or named) version's: read it to admit the start.
        const size = spec
          ? spec.nodes.length
          : (await repo.getWorkflow(options.workflow!, options.version)).spec.nodes.length;
        await admission.admit(size);
        const run = await repo.start(spec, options);
        metrics?.runsStarted.inc();
        logger.debug('run started', { run: run.id, nodes: run.nodes.length });
        const warnings = unservedRuntimeWarnings(
          run.nodes.map((n) => n.spec),
          await repo.listAgents(),
        );
        return create(cp.StartResponseSchema, { run: readRunToProto(run), warnings });
      }),
    listRuns: (req) =>
      guard(async () => {
        const page = await repo.listRuns({
          ...listQueryFromNs(req.startNs, req.finishNs, req.limit, req.cursor),
          ...runFilterFromProto(req),
        });
        return create(cp.ListRunsResponseSchema, {
          runs: page.runs.map(runSummaryToProto),
          nextCursor: page.nextCursor ?? '',
        });
      }),
    inspect: (req) =>
      guard(async () =>
        create(cp.InspectResponseSchema, { run: readRunToProto(await repo.inspect(requireId(req.id))) }),
      ),
    listAgents: () =>
      guard(async () =>
        create(cp.ListAgentsResponseSchema, { agents: (await repo.listAgents()).map(agentToProto) }),
      ),
    cancel: (req) =>
      guard(async () =>
        create(cp.CancelResponseSchema, { run: readRunToProto(await repo.cancel(requireId(req.id))) }),
      ),
    retry: (req) =>
      guard(async () => {
        const run = await repo.retry(requireId(req.id), req.nodes.length > 0 ? [...req.nodes] : undefined);
        logger.debug('run retried', { run: run.id, nodes: req.nodes.length });
        return create(cp.RetryResponseSchema, { run: readRunToProto(run) });
      }),
    rerun: (req) =>
      guard(async () => {
        const plan = planRerun(await repo.inspect(requireId(req.id)));
        await admission.admit(plan.graph.nodes.length);
        const run = await startRerun(repo, plan);
        metrics?.runsStarted.inc();
        logger.debug('run started again', { run: run.id, from: req.id });
        return create(cp.RerunResponseSchema, { run: readRunToProto(run) });
      }),
    getAttemptOutput: (req) =>
      guard(async () => {
        const output = await attemptOutput(repo, requireId(req.runId), req.node, req.attempt);
        return create(cp.GetAttemptOutputResponseSchema, { output });
      }),
    ...workflowMethods(repo, guard),
    ...scheduleMethods(repo, guard, readRunToProto),
    async *watch(req, ctx) {
      try {
        yield* watchMessages(repo, requireId(req.id), { signal: ctx.signal });
      } catch (e) {
        if (ctx.signal.aborted) return;
        throw toConnectError(e, logger);
      }
    },
  };
}

/** A run on the wire from a read: outputs within the read budget (the rest fetched with GetAttemptOutput). */
export function readRunToProto(run: Run): pb.Run {
  return runToProto(withOutputBudget(run, LIMITS.maxReadOutputBytes));
}

/** One attempt's full output; `attempt` is 1-based. */
export async function attemptOutput(
  repo: Repository,
  runId: string,
  node: string,
  attempt: number,
): Promise<Uint8Array> {
  const run = await repo.inspect(runId);
  const n = run.nodes.find((x) => x.spec.name === node);
  if (!n) throw new NotFoundError('node', `${runId}/${node}`);
  const a = n.attempts[attempt - 1];
  if (!a) throw new NotFoundError('attempt', `${runId}/${node}#${attempt}`);
  return a.output;
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

/**
 * Starts what planRerun decided: the run's workflow version with its params when it came from one, else (or
 * when that workflow has been deleted since) its graph; the name and labels either way.
 */
async function startRerun(repo: Repository, plan: RerunPlan): Promise<Run> {
  const identity = { name: plan.name, labels: plan.labels };
  if (plan.workflow) {
    const { name, version, params } = plan.workflow;
    try {
      return await repo.start(undefined, { workflow: name, version, params, ...identity });
    } catch (err) {
      if (!(err instanceof NotFoundError && err.kind === 'workflow')) throw err;
    }
  }
  return repo.start(plan.graph, identity);
}
