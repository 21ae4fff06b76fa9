import {
  create,
  type DescMessage,
  fromJson,
  type JsonValue,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { readJson } from './http.js';
import { decodeName, type Reply, type Route } from './workflow-routes.js';

/**
 * The JSON routes of schedules (rule 18):
 *
 *   PUT    /v0/schedules/{name}   {"workflow": ..., "cron": ..., "timezone": ..., "params": {...},
 *                                  "overlap": ..., "catchup": "1h", "paused": false}
 *   GET    /v0/schedules          every schedule
 *   GET    /v0/schedules/{name}   the schedule, next_slots, recent_runs (its history holds missed slots)
 *   POST   /v0/schedules/{name}/pause | resume | trigger
 *   POST   /v0/schedules/{name}/backfill   {"from": RFC 3339, "to": RFC 3339}
 *   DELETE /v0/schedules/{name}
 */
export function scheduleRoutes(
  service: ServiceImpl<typeof cp.ControlPlane>,
  ctx: HandlerContext,
  reply: Reply,
  maxBodyBytes: number,
): [string, RegExp, string, Route][] {
  const nameOf = (m: RegExpMatchArray) => ({ name: decodeName(m[1]!) });
  /** A route whose request is the schedule's name from the path, and nothing else. */
  const byName = <I extends DescMessage, O extends DescMessage>(
    method: string,
    suffix: string,
    name: string,
    input: I,
    output: O,
    call: (req: MessageShape<I>, ctx: HandlerContext) => Promise<MessageInitShape<O>> | MessageInitShape<O>,
  ): [string, RegExp, string, Route] => [
    method,
    new RegExp(`^/v0/schedules/([^/]+)${suffix}$`),
    name,
    async (_q, res, _u, m) =>
      reply(res, output, await call(create(input, nameOf(m) as unknown as MessageInitShape<I>), ctx)),
  ];
  return [
    [
      'GET',
      /^\/v0\/schedules$/,
      'schedules',
      async (_q, res) =>
        reply(
          res,
          cp.ListSchedulesResponseSchema,
          await service.listSchedules!(create(cp.ListSchedulesRequestSchema), ctx),
        ),
    ],
    [
      'PUT',
      /^\/v0\/schedules\/([^/]+)$/,
      'schedule_put',
      async (req, res, _u, m) => {
        const json = await readJson(req, maxBodyBytes);
        if (json === null || typeof json !== 'object' || Array.isArray(json))
          throw new InvalidArgumentError(
            'request body must be a JSON object {"workflow": "...", "cron": "...", "timezone": "...", "params": {...}, "overlap": "...", "catchup": "..."}',
          );
        const { name: _ignored, ...body } = json as Record<string, JsonValue>;
        let msg: cp.PutScheduleRequest;
        try {
          msg = fromJson(cp.PutScheduleRequestSchema, { ...body, ...nameOf(m) });
        } catch (e) {
          throw new InvalidArgumentError(`invalid schedule: ${(e as Error).message}`);
        }
        reply(res, cp.PutScheduleResponseSchema, await service.putSchedule!(msg, ctx));
      },
    ],
    byName(
      'GET',
      '',
      'schedule_get',
      cp.GetScheduleRequestSchema,
      cp.GetScheduleResponseSchema,
      service.getSchedule!,
    ),
    byName(
      'DELETE',
      '',
      'schedule_delete',
      cp.DeleteScheduleRequestSchema,
      cp.DeleteScheduleResponseSchema,
      service.deleteSchedule!,
    ),
    byName(
      'POST',
      '/pause',
      'schedule_pause',
      cp.PauseScheduleRequestSchema,
      cp.PauseScheduleResponseSchema,
      service.pauseSchedule!,
    ),
    byName(
      'POST',
      '/resume',
      'schedule_resume',
      cp.ResumeScheduleRequestSchema,
      cp.ResumeScheduleResponseSchema,
      service.resumeSchedule!,
    ),
    byName(
      'POST',
      '/trigger',
      'schedule_trigger',
      cp.TriggerScheduleRequestSchema,
      cp.TriggerScheduleResponseSchema,
      service.triggerSchedule!,
    ),
    [
      'POST',
      /^\/v0\/schedules\/([^/]+)\/backfill$/,
      'schedule_backfill',
      async (req, res, _u, m) => {
        const json = await readJson(req, maxBodyBytes);
        const body = json as Record<string, unknown> | null;
        if (
          body === null ||
          typeof body !== 'object' ||
          typeof body.from !== 'string' ||
          typeof body.to !== 'string'
        )
          throw new InvalidArgumentError(
            'request body must be a JSON object {"from": RFC 3339, "to": RFC 3339}',
          );
        const msg = create(cp.BackfillScheduleRequestSchema, { ...nameOf(m), from: body.from, to: body.to });
        reply(res, cp.BackfillScheduleResponseSchema, await service.backfillSchedule!(msg, ctx));
      },
    ],
  ];
}
