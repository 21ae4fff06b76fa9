import { Handle, type Node as FlowNode, type NodeProps, Position } from '@xyflow/react';
import { memo } from 'react';
import { formatDuration, formatMs, LOOK_LABEL, type NodeLook } from '../../api/format.js';
import { useNow } from '../../state/useNow.js';

export interface GraphNodeData extends Record<string, unknown> {
  name: string;
  runtime: string;
  look: NodeLook;
  attempts: number;
  /** The current or last attempt's start and end (RFC 3339; end empty while running). */
  startedAt: string;
  finishedAt: string;
  /** Not among the nodes a status badge picked: drawn faint. */
  dimmed: boolean;
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
      className={`gnode look-${data.look}${selected ? ' selected' : ''}${data.dimmed ? ' dimmed' : ''}`}
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
          {data.finishedAt ? (
            <Took text={formatDuration(data.startedAt, data.finishedAt)} />
          ) : (
            data.startedAt && (data.look === 'running' || data.look === 'orphaned') && <Elapsed since={data.startedAt} />
          )}
        </span>
      </div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
}

export const GraphNode = memo(GraphNodeView);

function Took({ text }: { text: string }) {
  return text ? <span data-duration> · {text}</span> : null;
}

/** A running node's clock: its own one-second timer, so only running nodes in view re-render. */
function Elapsed({ since }: { since: string }) {
  const now = useNow(1000);
  return <Took text={formatMs(now - Date.parse(since))} />;
}
