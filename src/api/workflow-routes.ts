import {
  create,
  type DescMessage,
  fromJson,
  type JsonValue,
  type MessageInitShape,
} from '@bufbuild/protobuf';
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import { type Req, type Res, readJson } from './http.js';

/**
 * The JSON routes of workflows (rule 16) and the run list's filters (rule 17):
 *
 *   PUT    /v0/workflows/{name}   {"spec": graph, "description": "...", "params": [...]}
 *   GET    /v0/workflows          each name's latest version
 *   GET    /v0/workflows/{name}   the latest version, or ?version=N
 *   GET    /v0/workflows/{name}/versions   every version, newest first
 *   DELETE /v0/workflows/{name}
 *   GET    /v0/runs?workflow=&label=k=v&label=…&status=&conclusion=&q=
 */

export type Route = (req: Req, res: Res, url: URL, match: RegExpMatchArray) => Promise<void>;
export type Reply = <D extends DescMessage>(res: Res, schema: D, msg: MessageInitShape<D>) => void;

export function workflowRoutes(
  service: ServiceImpl<typeof cp.ControlPlane>,
  ctx: HandlerContext,
  reply: Reply,
  maxBodyBytes: number,
): [string, RegExp, string, Route][] {
  return [
    [
      'GET',
      /^\/v0\/workflows$/,
      'workflows',
      async (_q, res) =>
        reply(
          res,
          cp.ListWorkflowsResponseSchema,
          await service.listWorkflows!(create(cp.ListWorkflowsRequestSchema), ctx),
        ),
    ],
    [
      'PUT',
      /^\/v0\/workflows\/([^/]+)$/,
      'workflow_put',
      async (req, res, _u, m) => {
        const json = await readJson(req, maxBodyBytes);
        if (json === null || typeof json !== 'object' || Array.isArray(json) || !('spec' in json))
          throw new InvalidArgumentError(
            'request body must be a JSON object {"spec": <graph>, "description": "...", "params": [...]}',
          );
        // A workflow file may carry its name (the CLI's format); it must be the path's, never silently replaced.
        const { name: given, ...body } = json as Record<string, JsonValue>;
        const name = decodeName(m[1]!);
        if (given !== undefined && given !== name)
          throw new InvalidArgumentError(
            `the body names workflow ${JSON.stringify(given)} but the path is /v0/workflows/${JSON.stringify(name)}`,
          );
        let msg: cp.PutWorkflowRequest;
        try {
          msg = fromJson(cp.PutWorkflowRequestSchema, { ...body, name });
        } catch (e) {
          throw new InvalidArgumentError(`invalid workflow: ${(e as Error).message}`);
        }
        reply(res, cp.PutWorkflowResponseSchema, await service.putWorkflow!(msg, ctx));
      },
    ],
    [
      'GET',
      /^\/v0\/workflows\/([^/]+)$/,
      'workflow_get',
      async (_q, res, url, m) =>
        reply(
          res,
          cp.GetWorkflowResponseSchema,
          await service.getWorkflow!(
            create(cp.GetWorkflowRequestSchema, {
              name: decodeName(m[1]!),
              version: versionParam(url.searchParams.get('version')),
            }),
            ctx,
          ),
        ),
    ],
    [
      'GET',
      /^\/v0\/workflows\/([^/]+)\/versions$/,
      'workflow_versions',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.ListWorkflowVersionsResponseSchema,
          await service.listWorkflowVersions!(
            create(cp.ListWorkflowVersionsRequestSchema, { name: decodeName(m[1]!) }),
            ctx,
          ),
        ),
    ],
    [
      'DELETE',
      /^\/v0\/workflows\/([^/]+)$/,
      'workflow_delete',
      async (_q, res, _u, m) =>
        reply(
          res,
          cp.DeleteWorkflowResponseSchema,
          await service.deleteWorkflow!(
            create(cp.DeleteWorkflowRequestSchema, { name: decodeName(m[1]!) }),
            ctx,
          ),
        ),
    ],
  ];
}

export function decodeName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new InvalidArgumentError(`malformed name in the path: ${JSON.stringify(segment)}`);
  }
}

function versionParam(v: string | null): number {
  if (v === null || v === '') return 0;
  if (!/^\d{1,9}$/.test(v) || Number(v) < 1)
    throw new InvalidArgumentError(`version must be a whole number from 1, got ${JSON.stringify(v)}`);
  return Number(v);
}

const STATUS: Record<string, pb.Run_Status> = {
  WAITING: pb.Run_Status.WAITING,
  RUNNING: pb.Run_Status.RUNNING,
  COMPLETED: pb.Run_Status.COMPLETED,
};
const CONCLUSION: Record<string, pb.Run_Conclusion> = {
  SUCCESS: pb.Run_Conclusion.SUCCESS,
  FAIL: pb.Run_Conclusion.FAIL,
  CANCELLED: pb.Run_Conclusion.CANCELLED,
  TIMED_OUT: pb.Run_Conclusion.TIMED_OUT,
};

/** The run list's filters from the query string: workflow=, label=k=v (repeatable), status=, conclusion=, q=. */
export function runFilterParams(
  p: URLSearchParams,
): Pick<cp.ListRunsRequest, 'workflow' | 'labels' | 'status' | 'conclusion' | 'search'> {
  const labels: Record<string, string> = {};
  for (const l of p.getAll('label')) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`label filter must be key=value, got ${JSON.stringify(l)}`);
    const key = l.slice(0, eq);
    // Every label must match, so two values of one key match no run: refused as the CLI refuses it, not narrowed
    // to the last one given.
    if (Object.hasOwn(labels, key) && labels[key] !== l.slice(eq + 1))
      throw new InvalidArgumentError(`label filter names ${JSON.stringify(key)} twice with different values`);
    labels[key] = l.slice(eq + 1);
  }
  const status = p.get('status') ?? '';
  if (status && !(status.toUpperCase() in STATUS))
    throw new InvalidArgumentError(
      `status must be one of WAITING, RUNNING, COMPLETED, got ${JSON.stringify(status)}`,
    );
  const conclusion = p.get('conclusion') ?? '';
  if (conclusion && !(conclusion.toUpperCase() in CONCLUSION))
    throw new InvalidArgumentError(
      `conclusion must be one of SUCCESS, FAIL, CANCELLED, TIMED_OUT, got ${JSON.stringify(conclusion)}`,
    );
  return {
    workflow: p.get('workflow') ?? '',
    labels,
    status: status ? STATUS[status.toUpperCase()]! : pb.Run_Status.NONE,
    conclusion: conclusion ? CONCLUSION[conclusion.toUpperCase()]! : pb.Run_Conclusion.UNSPECIFIED,
    search: p.get('q') ?? p.get('search') ?? '',
  };
}
