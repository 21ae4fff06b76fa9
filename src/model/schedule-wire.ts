import { create } from '@bufbuild/protobuf';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type { OverlapPolicy, Schedule, ScheduleInput, SlotOutcome } from './schedules.js';

/** Schedules between the domain types and the wire (rule 18). A proto's empty text is "not given". */

export function scheduleToProto(s: Schedule): cp.Schedule {
  return create(cp.ScheduleSchema, {
    ...s,
    history: s.history.map((r) =>
      create(cp.ScheduleSlotSchema, { ...r, runId: r.runId ?? '', error: r.error ?? '' }),
    ),
  });
}

export function scheduleFromProto(s: cp.Schedule): Schedule {
  return {
    name: s.name,
    workflow: s.workflow,
    cron: s.cron,
    timezone: s.timezone,
    params: { ...s.params },
    overlap: s.overlap as OverlapPolicy,
    catchup: s.catchup,
    paused: s.paused,
    nextSlot: s.nextSlot,
    history: s.history.map((r) => ({
      slot: r.slot,
      outcome: r.outcome as SlotOutcome,
      ...(r.runId ? { runId: r.runId } : {}),
      ...(r.error ? { error: r.error } : {}),
    })),
    createdAt: s.createdAt,
    updatedAt: s.updatedAt,
  };
}

export function scheduleInputToProto(name: string, i: ScheduleInput): cp.PutScheduleRequest {
  return create(cp.PutScheduleRequestSchema, {
    name,
    workflow: i.workflow,
    cron: i.cron,
    timezone: i.timezone ?? '',
    params: i.params ?? {},
    overlap: i.overlap ?? '',
    catchup: i.catchup ?? '',
    paused: i.paused ?? false,
  });
}

export function scheduleInputFromProto(r: cp.PutScheduleRequest): ScheduleInput {
  return {
    workflow: r.workflow,
    cron: r.cron,
    ...(r.timezone ? { timezone: r.timezone } : {}),
    params: { ...r.params },
    ...(r.overlap ? { overlap: r.overlap as OverlapPolicy } : {}),
    ...(r.catchup ? { catchup: r.catchup } : {}),
    paused: r.paused,
  };
}
