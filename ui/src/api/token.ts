// The API token lives in localStorage so a reload keeps the user signed in.
// Subscribers (the header's token field, pages waiting on auth) hear changes.
const KEY = 'adagio.apiToken';
const listeners = new Set<() => void>();

export function getToken(): string {
  try {
    return localStorage.getItem(KEY) ?? '';
  } catch {
    // Storage can be disabled (private mode, policies); the app still works without auth.
    return '';
  }
}

export function setToken(token: string): void {
  try {
    if (token) localStorage.setItem(KEY, token);
    else localStorage.removeItem(KEY);
  } catch {
    // See getToken.
  }
  for (const l of listeners) l();
}

export function onTokenChange(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
