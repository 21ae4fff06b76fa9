import { create, type JsonValue, toJson } from '@bufbuild/protobuf';
import {
  ListAgentsResponseSchema,
  ListRunsResponseSchema,
} from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import { RunSchema, StatsSchema } from '../gen/adagio/v1/adagio_pb.js';
import type { AgentInfo, Run, Stats } from '../model/types.js';
import { agentToProto, runSummaryToProto, runToProto, statsToProto } from '../model/wire.js';
import type { RunPage } from '../protocol/repository.js';

/**
 * `--json` views: the canonical proto3 JSON of the wire messages, the same
 * shapes the API returns, so output can be piped between the two.
 */

function print(value: JsonValue): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function runJson(run: Run): string {
  return print(toJson(RunSchema, runToProto(run)));
}

export function runPageJson(page: RunPage): string {
  const message = create(ListRunsResponseSchema, {
    runs: page.runs.map(runSummaryToProto),
    nextCursor: page.nextCursor ?? '',
  });
  return print(toJson(ListRunsResponseSchema, message));
}

export function agentsJson(agents: readonly AgentInfo[]): string {
  return print(
    toJson(ListAgentsResponseSchema, create(ListAgentsResponseSchema, { agents: agents.map(agentToProto) })),
  );
}

export function statsJson(stats: Stats): string {
  return print(toJson(StatsSchema, statsToProto(stats)));
}
