import { useState, useSyncExternalStore } from 'react';
import { getToken, onTokenChange, setToken } from '../api/token.js';

/**
 * The API token, kept in localStorage and sent as `Authorization: Bearer …`.
 * Only needed when adagiod runs with -api-token.
 */
export function TokenField() {
  const token = useSyncExternalStore(onTokenChange, getToken);
  const [open, setOpen] = useState(false);
  const [draft, setDraft] = useState('');
  if (!open) {
    return (
      <button
        type="button"
        className="token-button"
        onClick={() => {
          setDraft(token);
          setOpen(true);
        }}
      >
        {token ? 'API token ✓' : 'API token'}
      </button>
    );
  }
  return (
    <form
      className="token-form"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(draft.trim());
        setOpen(false);
      }}
    >
      <input
        type="password"
        name="token"
        aria-label="API token"
        autoComplete="off"
        placeholder="API token"
        value={draft}
        onChange={(e) => setDraft(e.target.value)}
      />
      <button type="submit">Save</button>
      {token && (
        <button
          type="button"
          onClick={() => {
            setToken('');
            setOpen(false);
          }}
        >
          Forget
        </button>
      )}
      <button type="button" onClick={() => setOpen(false)}>
        Close
      </button>
    </form>
  );
}
