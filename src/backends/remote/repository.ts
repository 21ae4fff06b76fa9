import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import {
  claimedFromProto,
  conclusionToProto,
  MAX_CLAIMS_HELD,
  metadataToProto,
} from '../../api/agent-service.js';
import { AdagioClient } from '../../client/index.js';
import * as ag from '../../gen/adagio/rpc/agent/agent_pb.js';
import * as pb from '../../gen/adagio/v1/adagio_pb.js';
import {
  checkClaimRefs,
  checkConclusion,
  checkHandOff,
  checkLeaseTtl,
  checkListLimit,
  checkMetadata,
  checkRetryNodes,
  checkRunId,
  checkStartedAt,
  decodeCursor,
} from '../../model/requests.js';
import {
  checkSchedule,
  checkScheduleName,
  type Schedule,
  type ScheduleInput,
  type ScheduleStep,
} from '../../model/schedules.js';
import type { AgentInfo, GraphSpec, Run, Stats } from '../../model/types.js';
import { validateGraph } from '../../model/validate.js';
import { agentFromProto } from '../../model/wire.js';
import {
  checkRunFilter,
  checkStartOptions,
  checkWorkflow,
  checkWorkflowName,
  checkWorkflowVersion,
  type WorkflowDefinition,
  type WorkflowInput,
  type WorkflowSummary,
} from '../../model/workflows.js';
import { InvalidArgumentError, InvalidGraphError, UnavailableError } from '../../protocol/errors.js';
import type {
  AgentRegistration,
  AppendOutputRequest,
  ClaimedNode,
  ClaimRef,
  ClaimRequest,
  FinishRequest,
  FinishResult,
  Lease,
  ListRunsQuery,
  NodeEvent,
  Repository,
  RunPage,
  StartOptions,
  SubscribeOptions,
  WatchEvent,
} from '../../protocol/repository.js';
import { finishedAlone } from '../../protocol/repository.js';
import { type CallContext, fromConnectError, fromControlError, NotSupportedError } from './errors.js';

export interface RemoteRepositoryOptions {
  /** Base URL of an adagiod API, e.g. http://127.0.0.1:7890. */
  address: string;
  /** Bearer token (the API's -agent-token or -api-token). */
  token?: string;
  /** Per unary call; default 30 s. The event stream has none. */
  timeoutMs?: number;
}

/**
 * The Repository protocol over the agent API, so the same AgentPool runs
 * embedded or remote: leases, registration, subscribe, claim and finish go
 * to adagio.rpc.agent.AgentService; the read/start side goes to the control
 * plane. The store stays behind the API: this process holds no credentials
 * but the API token. Errors come back as the protocol's typed errors.
 */
export class RemoteRepository implements Repository {
  /** Rule 21: agents of the agent API claim what they run. */
  readonly handsOff: boolean = false;

  readonly address: string;
  private readonly rpc: Client<typeof ag.AgentService>;
  private readonly control: AdagioClient;
  private readonly timeoutMs: number;

  constructor(options: RemoteRepositoryOptions) {
    this.address = options.address.replace(/\/+$/, '');
    if (!/^https?:\/\/[^/]+$/i.test(this.address))
      throw new InvalidArgumentError(`the API address must be http(s)://host:port, got "${options.address}"`);
    const token = options.token;
    const interceptors: Interceptor[] = token
      ? [
          (next) => (req) => {
            req.header.set('Authorization', `Bearer ${token}`);
            return next(req);
          },
        ]
      : [];
    this.timeoutMs = options.timeoutMs ?? 30_000;
    // Connect over HTTP/1.1: passes any proxy, and server streams work on it too.
    this.rpc = createClient(
      ag.AgentService,
      createConnectTransport({ baseUrl: this.address, httpVersion: '1.1', interceptors }),
    );
    this.control = new AdagioClient({ address: this.address, token: token ?? '', timeoutMs: this.timeoutMs });
  }

  // ---- the agent side: leases, registration, events, claims

  async grantLease(ttlMs?: number): Promise<Lease> {
    // The protocol's request checks run here too, so a remote client is refused in the same words.
    if (ttlMs !== undefined) checkLeaseTtl(ttlMs);
    const res = await this.call({}, () => this.rpc.grantLease({ ttlMs: BigInt(ttlMs ?? 0) }, this.opts()));
    return { id: res.lease!.id, ttlMs: Number(res.lease!.ttlMs) };
  }

  async keepAlive(leaseId: string): Promise<void> {
    await this.call({ leaseId }, () => this.rpc.heartbeat({ leaseId }, this.opts()));
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.call({ leaseId }, () => this.rpc.revokeLease({ leaseId }, this.opts()));
  }

  async registerAgent(leaseId: string, agent: AgentRegistration): Promise<AgentInfo> {
    const res = await this.call({ leaseId, id: agent.id }, () =>
      this.rpc.register(
        { leaseId, agentId: agent.id, runtimes: agent.runtimes, hostname: agent.hostname ?? '' },
        this.opts(),
      ),
    );
    if (res.agent) return agentFromProto(res.agent);
    return { id: agent.id, runtimes: agent.runtimes, startedAt: '', hostname: agent.hostname ?? '' };
  }

  async deregisterAgent(agentId: string): Promise<void> {
    await this.call({ id: agentId }, () => this.rpc.deregister({ agentId }, this.opts()));
  }

  async claim(request: ClaimRequest): Promise<ClaimedNode | undefined> {
    // Checked here: protobuf would send an unpaired surrogate as U+FFFD, which the server would accept.
    checkMetadata(request.metadata);
    const ctx = { leaseId: request.leaseId, runId: request.runId, node: request.node };
    const res = await this.call(ctx, () =>
      this.rpc.claim(
        {
          runId: request.runId,
          nodeName: request.node,
          leaseId: request.leaseId,
          agentId: request.agentId,
          metadata: metadataToProto(request.metadata),
        },
        this.opts(),
      ),
    );
    return res.claimed ? claimedFromProto(res.claimed) : undefined;
  }

  /** The agent API takes no hand-off (rule 21 allows none): its agents claim what they run. */
  async finish(request: FinishRequest): Promise<FinishResult> {
    checkConclusion(request.conclusion);
    checkMetadata(request.metadata);
    checkStartedAt(request.startedAt);
    if (request.handOff) checkHandOff(request.handOff);
    await this.call({ runId: request.runId, node: request.node }, () =>
      this.rpc.finish(
        {
          runId: request.runId,
          nodeName: request.node,
          claimId: request.claimId,
          conclusion: conclusionToProto(request.conclusion),
          output: request.output ?? new Uint8Array(),
          metadata: metadataToProto(request.metadata),
          startedAtMs: BigInt(request.startedAt ?? 0),
        },
        this.opts(),
      ),
    );
    return finishedAlone();
  }

  async appendOutput(request: AppendOutputRequest): Promise<void> {
    await this.call({ runId: request.runId, node: request.node }, () =>
      this.rpc.appendOutput(
        {
          runId: request.runId,
          nodeName: request.node,
          claimId: request.claimId,
          seq: BigInt(request.seq),
          chunk: request.chunk,
        },
        this.opts(),
      ),
    );
  }

  async claimsHeld(claims: ClaimRef[]): Promise<boolean[]> {
    return this.inCalls(claims, async (part) => {
      const res = await this.call({}, () =>
        this.rpc.claimsHeld({ claims: claimRefsToProto(part) }, this.opts()),
      );
      return this.oneEach(res.held, part);
    });
  }

  async release(claims: ClaimRef[]): Promise<boolean[]> {
    checkClaimRefs(claims);
    return this.inCalls(claims, async (part) => {
      const res = await this.call({}, () =>
        this.rpc.release({ claims: claimRefsToProto(part) }, this.opts()),
      );
      return this.oneEach(res.released, part);
    });
  }

  /**
   * The server takes MAX_CLAIMS_HELD claims a call; a pool with a deep
   * claim-ahead queue and many slots holds more: asked in parts, in order.
   */
  private async inCalls(
    claims: ClaimRef[],
    ask: (part: ClaimRef[]) => Promise<boolean[]>,
  ): Promise<boolean[]> {
    const answers: boolean[] = [];
    for (let i = 0; i < claims.length; i += MAX_CLAIMS_HELD)
      answers.push(...(await ask(claims.slice(i, i + MAX_CLAIMS_HELD))));
    return answers;
  }

  /** An answer per claim, or the server is not one we understand. */
  private oneEach(answers: boolean[], claims: ClaimRef[]): boolean[] {
    if (answers.length !== claims.length)
      throw new UnavailableError(
        `API server at ${this.address} answered ${answers.length} claims for ${claims.length} asked about`,
      );
    return answers;
  }

  async *subscribe(options: SubscribeOptions): AsyncIterable<NodeEvent> {
    const { signal } = options;
    try {
      for await (const msg of this.rpc.subscribe({ runtimes: options.runtimes }, { signal })) {
        const ev = msg.event;
        if (!ev) continue;
        yield {
          type: ev.type === pb.Event_Type.NODE_ORPHANED ? 'NODE_ORPHANED' : 'NODE_READY',
          runId: ev.runId,
          node: ev.nodeName,
          runtime: ev.runtime,
        };
      }
    } catch (e) {
      if (signal.aborted) return;
      throw fromConnectError(e, { address: this.address });
    }
  }

  // ---- workflows (rule 16), through the typed client; checked here too, like a start's graph

  async putWorkflow(name: string, input: WorkflowInput): Promise<WorkflowDefinition> {
    checkWorkflow(name, input);
    return this.controlCall({}, () => this.control.putWorkflow(name, input));
  }
  async getWorkflow(name: string, version?: number): Promise<WorkflowDefinition> {
    checkWorkflowName(name);
    checkWorkflowVersion(version);
    return this.controlCall({}, () => this.control.getWorkflow(name, version));
  }
  listWorkflows(): Promise<WorkflowSummary[]> {
    return this.controlCall({}, () => this.control.listWorkflows());
  }
  async listWorkflowVersions(name: string): Promise<WorkflowDefinition[]> {
    checkWorkflowName(name);
    return this.controlCall({}, () => this.control.listWorkflowVersions(name));
  }
  async deleteWorkflow(name: string): Promise<void> {
    checkWorkflowName(name);
    return this.controlCall({}, () => this.control.deleteWorkflow(name));
  }

  // ---- schedules (rule 18), through the typed client; checked here too

  async putSchedule(name: string, input: ScheduleInput): Promise<Schedule> {
    checkSchedule(name, input);
    return this.controlCall({}, () => this.control.putSchedule(name, input));
  }
  async getSchedule(name: string): Promise<Schedule> {
    checkScheduleName(name);
    return (await this.controlCall({}, () => this.control.getSchedule(name))).schedule;
  }
  listSchedules(): Promise<Schedule[]> {
    return this.controlCall({}, () => this.control.listSchedules());
  }
  async deleteSchedule(name: string): Promise<void> {
    checkScheduleName(name);
    return this.controlCall({}, () => this.control.deleteSchedule(name));
  }
  async pauseSchedule(name: string, paused: boolean): Promise<Schedule> {
    checkScheduleName(name);
    return this.controlCall({}, () =>
      paused ? this.control.pauseSchedule(name) : this.control.resumeSchedule(name),
    );
  }
  /** The schedulers run next to the store, in the API process; the API has no call for their step. */
  async advanceSchedule(_name: string, _step: ScheduleStep): Promise<boolean> {
    throw new NotSupportedError('advanceSchedule');
  }

  // ---- the control-plane side, through the typed client

  async start(spec: GraphSpec | undefined, options: StartOptions = {}): Promise<Run> {
    // Checked here too: protobuf would send an unpaired surrogate as U+FFFD, which the server would accept.
    checkStartOptions(spec, options);
    const problems = spec ? validateGraph(spec) : [];
    if (problems.length > 0) throw new InvalidGraphError(problems);
    return this.controlCall({}, () => this.control.start(spec, options));
  }
  inspect(runId: string): Promise<Run> {
    return this.controlCall({ runId }, () => this.control.inspect(runId));
  }
  async listRuns(query?: ListRunsQuery): Promise<RunPage> {
    checkListLimit(query?.limit);
    if (query) checkRunFilter(query);
    if (query?.cursor) decodeCursor(query.cursor);
    return this.controlCall({}, () => this.control.listRuns(query));
  }
  stats(): Promise<Stats> {
    return this.controlCall({}, () => this.control.stats());
  }
  cancel(runId: string): Promise<Run> {
    return this.controlCall({ runId }, () => this.control.cancel(runId));
  }
  retry(runId: string, nodes?: string[]): Promise<Run> {
    checkRunId(runId);
    checkRetryNodes(nodes);
    return this.controlCall({ runId }, () => this.control.retry(runId, nodes));
  }
  listAgents(): Promise<AgentInfo[]> {
    return this.controlCall({}, () => this.control.listAgents());
  }
  watch(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    checkRunId(runId); // before any call, as every backend refuses it
    return this.watchStream(runId, options);
  }

  private async *watchStream(runId: string, options: { signal: AbortSignal }): AsyncIterable<WatchEvent> {
    try {
      yield* this.control.watch(runId, options);
    } catch (e) {
      throw fromControlError(e, { runId });
    }
  }

  async deleteCompletedRunsBefore(_ms: number): Promise<number> {
    throw new NotSupportedError('deleteCompletedRunsBefore');
  }

  /** Resolves when the API answers its readiness check (which pings its backend). */
  ping(): Promise<void> {
    // node:http rather than fetch: fetch refuses some ports outright ("bad port").
    const get = this.address.startsWith('https:') ? httpsGet : httpGet;
    return new Promise((resolve, reject) => {
      const req = get(`${this.address}/readyz`, { timeout: this.timeoutMs }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () =>
          res.statusCode === 200
            ? resolve()
            : reject(new UnavailableError(`the API at ${this.address} is not ready: ${text.trim()}`)),
        );
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (e) =>
        reject(
          new UnavailableError(`cannot reach the agent API at ${this.address}: ${describe(e)}`, { cause: e }),
        ),
      );
    });
  }

  async close(): Promise<void> {
    // Nothing held open beyond pooled keep-alive sockets, which do not keep the process alive.
  }

  private async controlCall<T>(ctx: { runId?: string }, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw fromControlError(e, ctx);
    }
  }

  private opts(): { timeoutMs: number } {
    return { timeoutMs: this.timeoutMs };
  }

  private async call<T>(ctx: Omit<CallContext, 'address'>, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw fromConnectError(e, { ...ctx, address: this.address });
    }
  }
}

function describe(e: unknown): string {
  let c: unknown = e;
  for (let i = 0; i < 5 && c; i++) {
    const code = (c as NodeJS.ErrnoException).code;
    if (code) return code === 'ECONNREFUSED' ? 'connection refused' : code;
    c = (c as { cause?: unknown }).cause;
  }
  return (e as Error)?.message ?? String(e);
}

const claimRefsToProto = (claims: ClaimRef[]) =>
  claims.map((c) => ({ runId: c.runId, nodeName: c.node, claimId: c.claimId }));
