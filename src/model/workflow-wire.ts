import { create } from '@bufbuild/protobuf';
import * as pb from '../gen/adagio/v1/adagio_pb.js';
import { graphFromProto, graphToProto } from './wire.js';
import type { ParamSpec, WorkflowDefinition, WorkflowSummary } from './workflows.js';

/** Workflow definitions between the domain types and the wire (rules 16, 17). */

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
