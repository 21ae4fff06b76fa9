import { useState } from 'react';
import { forgetStartWarnings, startWarningsOf } from '../state/startWarnings.js';

/** The Start response's warnings for this run, if it was started from this page session; dismissable. */
export function StartWarnings({ runId }: { runId: string }) {
  const [warnings, setWarnings] = useState(() => startWarningsOf(runId));
  if (warnings.length === 0) return null;
  const dismiss = () => {
    forgetStartWarnings(runId);
    setWarnings([]);
  };
  return (
    <div className="start-warnings" role="alert" aria-label="start warnings">
      <ul>
        {warnings.map((w) => (
          <li key={w}>{w}</li>
        ))}
      </ul>
      <button type="button" className="icon-button" onClick={dismiss} aria-label="dismiss warnings">
        ×
      </button>
    </div>
  );
}
