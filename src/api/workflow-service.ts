import { create } from '@bufbuild/protobuf';
import type { ServiceImpl } from '@connectrpc/connect';
import * as cp from '../gen/adagio/rpc/controlplane/controlplane_pb.js';
import type * as pb from '../gen/adagio/v1/adagio_pb.js';
import { graphFromProto, runConclusionFromProto, runStatusFromProto } from '../model/wire.js';
import { paramFromProto, workflowSummaryToProto, workflowToProto } from '../model/workflow-wire.js';
import type { RunFilter } from '../model/workflows.js';
import { InvalidArgumentError } from '../protocol/errors.js';
import type { Repository, StartOptions } from '../protocol/repository.js';

/**
 * The control plane's workflow methods (rule 16) and the wire forms of a
 * start's options and a list's filters (rule 17): thin translations, the
 * checks are the protocol's.
 */
type WorkflowMethods = Pick<
  ServiceImpl<typeof cp.ControlPlane>,
  'putWorkflow' | 'getWorkflow' | 'listWorkflows' | 'listWorkflowVersions' | 'deleteWorkflow'
>;

export function workflowMethods(
  repo: Repository,
  guard: <T>(fn: () => Promise<T>) => Promise<T>,
): WorkflowMethods {
  return {
    putWorkflow: (req) =>
      guard(async () => {
        if (!req.spec) throw new InvalidArgumentError('spec is required');
        const w = await repo.putWorkflow(req.name, {
          spec: graphFromProto(req.spec),
          description: req.description,
          params: req.params.map(paramFromProto),
        });
        return create(cp.PutWorkflowResponseSchema, { workflow: workflowToProto(w) });
      }),
    getWorkflow: (req) =>
      guard(async () =>
        create(cp.GetWorkflowResponseSchema, {
          workflow: workflowToProto(await repo.getWorkflow(req.name, req.version || undefined)),
        }),
      ),
    listWorkflows: () =>
      guard(async () =>
        create(cp.ListWorkflowsResponseSchema, {
          workflows: (await repo.listWorkflows()).map(workflowSummaryToProto),
        }),
      ),
    listWorkflowVersions: (req) =>
      guard(async () =>
        create(cp.ListWorkflowVersionsResponseSchema, {
          workflows: (await repo.listWorkflowVersions(req.name)).map(workflowToProto),
        }),
      ),
    deleteWorkflow: (req) =>
      guard(async () => {
        await repo.deleteWorkflow(req.name);
        return create(cp.DeleteWorkflowResponseSchema);
      }),
  };
}

/** A StartRequest's options; the proto's zero values are "not given". */
export function startOptionsFromProto(req: cp.StartRequest): StartOptions {
  const o: StartOptions = {};
  if (req.workflow) o.workflow = req.workflow;
  if (req.version) o.version = req.version;
  if (Object.keys(req.params).length > 0) o.params = { ...req.params };
  if (req.name) o.name = req.name;
  if (Object.keys(req.labels).length > 0) o.labels = { ...req.labels };
  if (req.requestId) o.requestId = req.requestId;
  return o;
}

/** A ListRunsRequest's filters; the proto's zero values are "not given". */
export function runFilterFromProto(req: cp.ListRunsRequest): RunFilter {
  const f: RunFilter = {};
  if (req.workflow) f.workflow = req.workflow;
  if (Object.keys(req.labels).length > 0) f.labels = { ...req.labels };
  if (req.status) f.status = runStatusFromProto(req.status as pb.Run_Status);
  const conclusion = runConclusionFromProto(req.conclusion);
  if (conclusion) f.conclusion = conclusion;
  if (req.search) f.search = req.search;
  return f;
}
