import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type * as pb from '../gen/adagio/v1/adagio_pb.js';
import { type Clock, type Run, runSummaryToProto, systemClock } from '../model/index.js';
import { scheduleInputFromProto, scheduleToProto } from '../model/schedule-wire.js';
import type { Repository } from '../protocol/repository.js';
import { backfillSchedule, scheduleView, triggerSchedule } from '../scheduler/actions.js';

/** The control plane's schedule methods (rule 18): thin translations; the checks are the protocol's. */
type ScheduleMethods = Pick<
  ServiceImpl<typeof cp.ControlPlane>,
  | 'putSchedule'
  | 'getSchedule'
  | 'listSchedules'
  | 'deleteSchedule'
  | 'pauseSchedule'
  | 'resumeSchedule'
  | 'triggerSchedule'
  | 'backfillSchedule'
>;

export function scheduleMethods(
  repo: Repository,
  guard: <T>(fn: () => Promise<T>) => Promise<T>,
  /** A read run's wire form (the service's, which bounds outputs). */
  readRunToProto: (run: Run) => pb.Run,
  clock: Clock = systemClock,
): ScheduleMethods {
  return {
    putSchedule: (req) =>
      guard(async () =>
        create(cp.PutScheduleResponseSchema, {
          schedule: scheduleToProto(await repo.putSchedule(req.name, scheduleInputFromProto(req))),
        }),
      ),
    getSchedule: (req) =>
      guard(async () => {
        const v = await scheduleView(repo, req.name, clock.now());
        return create(cp.GetScheduleResponseSchema, {
          schedule: scheduleToProto(v.schedule),
          nextSlots: v.nextSlots,
          recentRuns: v.recentRuns.map(runSummaryToProto),
        });
      }),
    listSchedules: () =>
      guard(async () =>
        create(cp.ListSchedulesResponseSchema, {
          schedules: (await repo.listSchedules()).map(scheduleToProto),
        }),
      ),
    deleteSchedule: (req) =>
      guard(async () => {
        await repo.deleteSchedule(req.name);
        return create(cp.DeleteScheduleResponseSchema);
      }),
    pauseSchedule: (req) =>
      guard(async () =>
        create(cp.PauseScheduleResponseSchema, {
          schedule: scheduleToProto(await repo.pauseSchedule(req.name, true)),
        }),
      ),
    resumeSchedule: (req) =>
      guard(async () =>
        create(cp.ResumeScheduleResponseSchema, {
          schedule: scheduleToProto(await repo.pauseSchedule(req.name, false)),
        }),
      ),
    triggerSchedule: (req) =>
      guard(async () =>
        create(cp.TriggerScheduleResponseSchema, {
          run: readRunToProto(await triggerSchedule(repo, req.name, clock.now())),
        }),
      ),
    backfillSchedule: (req) =>
      guard(async () =>
        create(cp.BackfillScheduleResponseSchema, {
          runs: (await backfillSchedule(repo, req.name, req.from, req.to, clock.now())).map(readRunToProto),
        }),
      ),
  };
}
