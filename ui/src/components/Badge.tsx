import type { NodeLook, RunLook } from '../api/format.js';

const TEXT: Record<NodeLook | RunLook, string> = {
  waiting: 'waiting',
  ready: 'ready',
  running: 'running',
  orphaned: 'orphaned',
  success: 'success',
  fail: 'failed',
  error: 'error',
  cancelled: 'cancelled',
  'timed-out': 'timed out',
  skipped: 'not run',
  completed: 'completed',
};

/** A coloured pill naming a run's or node's state (colours in styles.css, shared with the graph). */
export function Badge({ look, text }: { look: NodeLook | RunLook; text?: string }) {
  return (
    <span className={`badge look-${look}`} data-look={look}>
      {text ?? TEXT[look]}
    </span>
  );
}
