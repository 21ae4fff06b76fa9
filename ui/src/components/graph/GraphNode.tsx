import { Handle, type Node as FlowNode, type NodeProps, Position } from '@xyflow/react';
import { memo } from 'react';
import { LOOK_LABEL, type NodeLook } from '../../api/format.js';

export interface GraphNodeData extends Record<string, unknown> {
  name: string;
  runtime: string;
  look: NodeLook;
  attempts: number;
}

export type GraphFlowNode = FlowNode<GraphNodeData, 'adagio'>;


/**
 * One node of the run graph. Memoised: React Flow re-renders it only when its
 * data object changes, i.e. when this node had a transition.
 * Names and runtimes are rendered as text (React escapes them). The handles
 * are invisible but needed: React Flow measures them whenever a node mounts,
 * and a node without them would lose its edges.
 */
function GraphNodeView({ data, selected }: NodeProps<GraphFlowNode>) {
  return (
    <div
      className={`gnode look-${data.look}${selected ? ' selected' : ''}`}
      data-node-name={data.name}
      data-look={data.look}
      title={data.name}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="gnode-name">{data.name}</div>
      <div className="gnode-meta">
        <span className="gnode-runtime">{data.runtime}</span>
        <span className="gnode-state">
          {LOOK_LABEL[data.look]}
          {data.attempts > 1 ? ` · ${data.attempts} attempts` : ''}
        </span>
      </div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

export const GraphNode = memo(GraphNodeView);
