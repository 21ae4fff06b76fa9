import { create } from '@bufbuild/protobuf';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import { graphFromProto, graphToProto } from './wire.js';
import type { ParamSpec, RunIdentity, WorkflowDefinition, WorkflowSummary } from './workflows.js';

/** Workflow definitions and run identity between the domain types and the wire (rules 16, 17). */

export function paramToProto(p: ParamSpec): pb.ParamSpec {
  return create(pb.ParamSpecSchema, {
    name: p.name,
    required: p.required ?? false,
    default: p.default,
    description: p.description ?? '',
  });
}

export function paramFromProto(p: pb.ParamSpec): ParamSpec {
  return {
    name: p.name,
    ...(p.required ? { required: true } : {}),
    ...(p.default !== undefined ? { default: p.default } : {}),
    ...(p.description ? { description: p.description } : {}),
  };
}

export function workflowToProto(w: WorkflowDefinition): pb.Workflow {
  return create(pb.WorkflowSchema, {
    name: w.name,
    version: w.version,
    spec: graphToProto(w.spec),
    description: w.description,
    params: w.params.map(paramToProto),
    createdAt: w.createdAt,
  });
}

export function workflowFromProto(w: pb.Workflow): WorkflowDefinition {
  return {
    name: w.name,
    version: w.version,
    spec: w.spec ? graphFromProto(w.spec) : { nodes: [], edges: [] },
    description: w.description,
    params: w.params.map(paramFromProto),
    createdAt: w.createdAt,
  };
}

/** A list entry: the latest version, without its spec. */
export function workflowSummaryToProto(w: WorkflowSummary): pb.Workflow {
  return create(pb.WorkflowSchema, {
    name: w.name,
    version: w.latestVersion,
    description: w.description,
    params: w.params.map(paramToProto),
    createdAt: w.createdAt,
  });
}

export function workflowSummaryFromProto(w: pb.Workflow): WorkflowSummary {
  return {
    name: w.name,
    latestVersion: w.version,
    description: w.description,
    params: w.params.map(paramFromProto),
    createdAt: w.createdAt,
  };
}

/** The identity fields of a wire Run (empty ones as the proto's zero values). */
export function identityToProto(
  r: RunIdentity,
): Pick<pb.Run, 'name' | 'labels' | 'workflow' | 'workflowVersion' | 'params' | 'requestId'> {
  return {
    name: r.name ?? '',
    labels: { ...r.labels },
    workflow: r.workflow ?? '',
    workflowVersion: r.workflowVersion ?? 0,
    params: { ...r.params },
    requestId: r.requestId ?? '',
  };
}

/** The identity of a wire Run, zero values left out. */
export function identityFromProto(r: pb.Run): RunIdentity {
  const out: RunIdentity = {};
  if (r.name) out.name = r.name;
  if (Object.keys(r.labels).length > 0) out.labels = { ...r.labels };
  if (r.workflow) out.workflow = r.workflow;
  if (r.workflowVersion) out.workflowVersion = r.workflowVersion;
  if (Object.keys(r.params).length > 0) out.params = { ...r.params };
  if (r.requestId) out.requestId = r.requestId;
  return out;
}
