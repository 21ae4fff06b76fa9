import { create, type JsonValue, toJson } from '@bufbuild/protobuf';
import {
  InspectResponseSchema,
  ListAgentsResponseSchema,
  ListRunsResponseSchema,
  StatsResponseSchema,
} from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type { AgentInfo, Run, Stats } from '../model/types.js';
import { agentToProto, runSummaryToProto, runToProto, statsToProto } from '../model/wire.js';
import type { RunPage } from '../protocol/repository.js';

/**
 * `--json` views: exactly what the matching JSON route returns (the
 * canonical proto3 JSON of the API's response messages: `{"run": …}`,
 * `{"runs": […], "nextCursor": …}`, `{"agents": […]}`, `{"stats": …}`), so
 * scripts can switch between the CLI and the HTTP API without reshaping.
 */

function print(value: JsonValue): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** A run, as `GET /v0/runs/{id}` (and start, cancel) returns it. Start/Cancel/Inspect responses share one shape. */
export function runJson(run: Run): string {
  return print(toJson(InspectResponseSchema, create(InspectResponseSchema, { run: runToProto(run) })));
}

export function runPageJson(page: RunPage): string {
  const message = create(ListRunsResponseSchema, {
    runs: page.runs.map(runSummaryToProto),
    nextCursor: page.nextCursor ?? '',
  });
  return print(toJson(ListRunsResponseSchema, message));
}

export function agentsJson(agents: readonly AgentInfo[]): string {
  const message = create(ListAgentsResponseSchema, { agents: agents.map(agentToProto) });
  return print(toJson(ListAgentsResponseSchema, message));
}

export function statsJson(stats: Stats): string {
  return print(toJson(StatsResponseSchema, create(StatsResponseSchema, { stats: statsToProto(stats) })));
}
