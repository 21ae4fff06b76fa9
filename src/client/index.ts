import { create } from '@bufbuild/protobuf';
import { type Client, Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { errorCodeOf } from '../api/errors.js';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import { MAX_TIMER_MS } from '../model/duration.js';
import { scheduleFromProto, scheduleInputToProto } from '../model/schedule-wire.js';
import type { Schedule, ScheduleInput, ScheduleView } from '../model/schedules.js';
import type { AgentInfo, Attempt, GraphSpec, Run, Stats } from '../model/types.js';
import {
  agentFromProto,
  graphToProto,
  nodeFromProto,
  runConclusionFromProto,
  runConclusionToProto,
  runFromProto,
  runStatusFromProto,
  runStatusToProto,
  runSummaryFromProto,
  statsFromProto,
} from '../model/wire.js';
import { paramToProto, workflowFromProto, workflowSummaryFromProto } from '../model/workflow-wire.js';
import type { WorkflowDefinition, WorkflowInput, WorkflowSummary } from '../model/workflows.js';
import { AdagioError, type ErrorCode } from '../protocol/errors.js';
import type { ListRunsQuery, RunPage, StartOptions, WatchEvent } from '../protocol/repository.js';

export const DEFAULT_ADDRESS = 'http://127.0.0.1:7890';

/** The longest `timeoutMs`: Node's timers fire at once for a longer delay. */
export const MAX_TIMEOUT_MS = MAX_TIMER_MS;

export interface ClientOptions {
  /** Base URL of an adagiod API; default $ADAGIO_ADDRESS, else http://127.0.0.1:7890. */
  address?: string;
  /** Bearer token; default $ADAGIO_TOKEN. */
  token?: string;
  /** Per unary call, more than 0 and at most MAX_TIMEOUT_MS; default 30 s. Watch streams have none. */
  timeoutMs?: number;
}

/** The latest time a run list can be bounded by (2262-04-11): the wire carries int64 nanoseconds. */
export const MAX_TIME_MS = Number((2n ** 63n - 1n) / 1_000_000n);

/**
 * A list bound (ms since the epoch, rounded to whole ms) as the wire's
 * nanoseconds; 0 when unset, which the wire reads as no bound, so an `until`
 * at or before the epoch is refused rather than listing every run.
 */
function timeBoundNs(bound: 'since' | 'until', ms: number | undefined): bigint {
  if (ms === undefined) return 0n;
  const whole = Math.round(ms);
  const min = bound === 'until' ? 1 : 0;
  if (!Number.isFinite(whole) || whole < min || whole > MAX_TIME_MS)
    throw new ApiError(
      'invalid_argument',
      `${bound} must be ms since the epoch from ${min} to ${MAX_TIME_MS} (${new Date(MAX_TIME_MS).toISOString()}); got ${ms}`,
    );
  return BigInt(whole) * 1_000_000n;
}

/** A failed API call: the server's code and its one-line message. */
export class ApiError extends AdagioError {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The typed client of the control plane (Connect protocol over HTTP/1.1, so
 * it passes any proxy), speaking the domain types of src/model.
 */
export class AdagioClient {
  readonly address: string;
  private readonly rpc: Client<typeof cp.ControlPlane>;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions = {}) {
    this.address = normalizeAddress(options.address || process.env.ADAGIO_ADDRESS || DEFAULT_ADDRESS);
    const token = options.token ?? process.env.ADAGIO_TOKEN;
    const interceptors: Interceptor[] = [];
    if (token) {
      interceptors.push((next) => (req) => {
        req.header.set('Authorization', `Bearer ${token}`);
        return next(req);
      });
    }
    this.timeoutMs = options.timeoutMs ?? 30_000;
    // Out of range, every call would fail at once with "did not answer in time": say so here instead.
    if (!(this.timeoutMs > 0 && this.timeoutMs <= MAX_TIMEOUT_MS))
      throw new ApiError(
        'invalid_argument',
        `timeoutMs must be more than 0 and at most ${MAX_TIMEOUT_MS} ms (about 24.8 days); got ${this.timeoutMs}`,
      );
    this.rpc = createClient(
      cp.ControlPlane,
      createConnectTransport({ baseUrl: this.address, httpVersion: '1.1', interceptors }),
    );
  }

  async stats(): Promise<Stats> {
    const res = await this.call(() => this.rpc.stats({}, this.opts()));
    return statsFromProto(res.stats ?? create(pb.StatsSchema));
  }

  /**
   * Starts a run of a graph, or (spec undefined, `options.workflow`) of a
   * stored workflow with params; `options.requestId` makes a repeat return
   * the first start's run.
   */
  async start(spec: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    const res = await this.call(() =>
      this.rpc.start(
        {
          spec: spec ? graphToProto(spec) : undefined,
          workflow: options.workflow ?? '',
          version: options.version ?? 0,
          params: options.params ?? {},
          name: options.name ?? '',
          labels: options.labels ?? {},
          requestId: options.requestId ?? '',
        },
        this.opts(),
      ),
    );
    return runFromProto(res.run!);
  }

  // ---- workflows (rule 16)

  /** Stores a new version, or returns the latest when the content is the same. */
  async putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    const res = await this.call(() =>
      this.rpc.putWorkflow(
        {
          name,
          spec: graphToProto(input.spec),
          description: input.description ?? '',
          params: (input.params ?? []).map(paramToProto),
        },
        this.opts(),
      ),
    );
    return workflowFromProto(res.workflow!);
  }

  /** The latest version, or `version`. */
  async getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    const res = await this.call(() => this.rpc.getWorkflow({ name, version: version ?? 0 }, this.opts()));
    return workflowFromProto(res.workflow!);
  }

  async listWorkflows(): Promise<WorkflowSummary[]> {
    const res = await this.call(() => this.rpc.listWorkflows({}, this.opts()));
    return res.workflows.map(workflowSummaryFromProto);
  }

  /** Every version, newest first. */
  async listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    const res = await this.call(() => this.rpc.listWorkflowVersions({ name }, this.opts()));
    return res.workflows.map(workflowFromProto);
  }

  async deleteWorkflow(name: string): Promise<void> {
    await this.call(() => this.rpc.deleteWorkflow({ name }, this.opts()));
  }

  // ---- schedules (rule 18)

  /** Stores the schedule (a new one fires from the first slot after now). */
  async putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    const res = await this.call(() => this.rpc.putSchedule(scheduleInputToProto(name, input), this.opts()));
    return scheduleFromProto(res.schedule!);
  }

  /** The schedule, its next fire times and its latest runs. */
  async getSchedule(name: string): Promise<ScheduleView> {
    const res = await this.call(() => this.rpc.getSchedule({ name }, this.opts()));
    return {
      schedule: scheduleFromProto(res.schedule!),
      nextSlots: res.nextSlots,
      recentRuns: res.recentRuns.map(runSummaryFromProto),
    };
  }

  async listSchedules(): Promise<Schedule[]> {
    const res = await this.call(() => this.rpc.listSchedules({}, this.opts()));
    return res.schedules.map(scheduleFromProto);
  }

  async deleteSchedule(name: string): Promise<void> {
    await this.call(() => this.rpc.deleteSchedule({ name }, this.opts()));
  }

  async pauseSchedule(name: string): Promise<Schedule> {
    return scheduleFromProto(
      (await this.call(() => this.rpc.pauseSchedule({ name }, this.opts()))).schedule!,
    );
  }

  async resumeSchedule(name: string): Promise<Schedule> {
    return scheduleFromProto(
      (await this.call(() => this.rpc.resumeSchedule({ name }, this.opts()))).schedule!,
    );
  }

  /** A run now, outside the cron. */
  async triggerSchedule(name: string): Promise<Run> {
    return runFromProto((await this.call(() => this.rpc.triggerSchedule({ name }, this.opts()))).run!);
  }

  /** A run for every slot in [from, to] (RFC 3339); a slot that has a run keeps it. */
  async backfillSchedule(name: string, from: string, to: string): Promise<Run[]> {
    const res = await this.call(() => this.rpc.backfillSchedule({ name, from, to }, this.opts()));
    return res.runs.map(runFromProto);
  }

  async listRuns(query: ListRunsQuery = {}): Promise<RunPage> {
    // Checked outside the call, which would report a bad bound as an internal error.
    const startNs = timeBoundNs('since', query.since);
    const finishNs = timeBoundNs('until', query.until);
    const res = await this.call(() =>
      this.rpc.listRuns(
        {
          startNs,
          finishNs,
          limit: query.limit ?? 0,
          cursor: query.cursor ?? '',
          workflow: query.workflow ?? '',
          labels: query.labels ?? {},
          status: query.status ? runStatusToProto(query.status) : pb.Run_Status.NONE,
          conclusion: runConclusionToProto(query.conclusion),
          search: query.search ?? '',
        },
        this.opts(),
      ),
    );
    const page: RunPage = { runs: res.runs.map(runSummaryFromProto) };
    if (res.nextCursor) page.nextCursor = res.nextCursor;
    return page;
  }

  async inspect(id: string): Promise<Run> {
    return runFromProto((await this.call(() => this.rpc.inspect({ id }, this.opts()))).run!);
  }

  async cancel(id: string): Promise<Run> {
    return runFromProto((await this.call(() => this.rpc.cancel({ id }, this.opts()))).run!);
  }

  /**
   * Resumes a completed run that did not succeed (rule 15): its failed,
   * cancelled and unreached nodes, or only `nodes` and what is downstream of
   * them, run again under the same id. A conflict error when the run is not
   * completed or succeeded.
   */
  async retry(id: string, nodes: string[] = []): Promise<Run> {
    return runFromProto((await this.call(() => this.rpc.retry({ id, nodes }, this.opts()))).run!);
  }

  /** Starts a new run of the graph run `id` was started from. */
  async rerun(id: string): Promise<Run> {
    return runFromProto((await this.call(() => this.rpc.rerun({ id }, this.opts()))).run!);
  }

  async listAgents(): Promise<AgentInfo[]> {
    return (await this.call(() => this.rpc.listAgents({}, this.opts()))).agents.map(agentFromProto);
  }

  /** One attempt's full output (1-based `attempt`): for attempts a read marked `omittedOutputBytes`. */
  async attemptOutput(runId: string, node: string, attempt: number): Promise<Uint8Array> {
    return (await this.call(() => this.rpc.getAttemptOutput({ runId, node, attempt }, this.opts()))).output;
  }

  /**
   * The run as it is now, then each node transition; ends when the run completes or the signal aborts.
   * The wire sends each attempt once (`attempts_from`); events here carry the node's whole attempt list again.
   */
  async *watch(id: string, options: { signal?: AbortSignal } = {}): AsyncIterable<WatchEvent> {
    const attempts = new Map<string, Attempt[]>();
    let streaming = false;
    try {
      for await (const msg of this.rpc.watch({ id }, { signal: options.signal })) {
        streaming = true;
        if (msg.run) {
          const run = runFromProto(msg.run);
          attempts.clear();
          for (const n of run.nodes) attempts.set(n.spec.name, n.attempts);
          yield { type: 'snapshot', run };
        } else if (msg.output)
          yield {
            type: 'output',
            runId: id,
            node: msg.output.nodeName,
            attempt: msg.output.attempt,
            offset: Number(msg.output.offset),
            chunk: msg.output.chunk,
          };
        else if (msg.node) {
          const node = nodeFromProto(msg.node);
          const before = (attempts.get(node.spec.name) ?? []).slice(0, msg.attemptsFrom);
          node.attempts = [...before, ...node.attempts];
          attempts.set(node.spec.name, node.attempts);
          const ev: WatchEvent = {
            type: 'node',
            runId: id,
            node,
            runStatus: runStatusFromProto(msg.runStatus),
          };
          const conclusion = runConclusionFromProto(msg.runConclusion);
          if (conclusion) ev.runConclusion = conclusion;
          yield ev;
        }
      }
    } catch (e) {
      if (options.signal?.aborted) return;
      if (streaming && isConnectionLoss(e))
        throw new ApiError(
          'unavailable',
          `lost the connection to adagiod at ${this.address} while watching run ${id}: the daemon went away ` +
            `(${describeCause(e as ConnectError) ?? (e as ConnectError).rawMessage}); try again once it is back`,
          { cause: e },
        );
      throw this.wrap(e);
    }
  }

  private opts(): { timeoutMs: number } {
    return { timeoutMs: this.timeoutMs };
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw this.wrap(e);
    }
  }

  private wrap(e: unknown): ApiError {
    if (!(e instanceof ConnectError)) return new ApiError('internal', String(e), { cause: e });
    if (e.code === Code.Unavailable || e.code === Code.Unknown) {
      const cause = describeCause(e);
      if (cause)
        return new ApiError('unavailable', `cannot reach adagiod at ${this.address}: ${cause}`, { cause: e });
    }
    if (e.code === Code.DeadlineExceeded)
      return new ApiError('unavailable', `adagiod at ${this.address} did not answer in time`, { cause: e });
    return new ApiError(errorCodeOf(e), e.rawMessage || Code[e.code], { cause: e });
  }
}

/**
 * An open stream that broke without an answer from the server (process gone,
 * connection reset or aborted), as opposed to an error the server sent.
 */
function isConnectionLoss(e: unknown): boolean {
  if (!(e instanceof ConnectError)) return false;
  return [Code.Canceled, Code.Aborted, Code.Unavailable, Code.Unknown, Code.Internal].includes(e.code);
}

/** The network-level reason (refused, unknown host, reset) behind a transport error, if any. */
function describeCause(e: ConnectError): string | undefined {
  let c: unknown = e.cause;
  for (let i = 0; i < 5 && c; i++) {
    const code = (c as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED') return 'connection refused (is adagiod running?)';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'unknown host';
    if (code === 'ECONNRESET' || code === 'EPIPE') return 'connection reset';
    if (code) return code;
    c = (c as { cause?: unknown }).cause;
  }
  return undefined;
}

function normalizeAddress(address: string): string {
  const withScheme = /^[a-z]+:\/\//i.test(address) ? address : `http://${address}`;
  return withScheme.replace(/\/+$/, '');
}
