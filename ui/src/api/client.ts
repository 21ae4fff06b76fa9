import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { ControlPlane } from '../../../src/gen/adagio/rpc/controlplane/controlplane_pb.js';
import { getToken } from './token.js';

/** Adds `Authorization: Bearer <token>` when the user has set a token. */
const bearer: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set('Authorization', `Bearer ${token}`);
  return next(req);
};

// The UI is served by adagiod itself, so the API is on the same origin.
// Binary protobuf, not JSON: a big run's snapshot and its stream of node
// transitions decode several times faster, which keeps the page responsive.
const transport = createConnectTransport({
  baseUrl: window.location.origin,
  useBinaryFormat: true,
  interceptors: [bearer],
});

/** The typed control-plane client (Connect protocol over fetch; Watch streams). */
export const api = createClient(ControlPlane, transport);

/** True when the error means "no or wrong API token". */
export function isAuthError(e: unknown): boolean {
  return e instanceof ConnectError && e.code === Code.Unauthenticated;
}

export function isAbort(e: unknown): boolean {
  return (
    (e instanceof ConnectError && e.code === Code.Canceled) ||
    (e instanceof DOMException && e.name === 'AbortError')
  );
}

/** One line for the user: the server's message without the transport's code prefix. */
export function errorMessage(e: unknown): string {
  if (e instanceof ConnectError) {
    if (e.code === Code.Unauthenticated) return 'The API needs a token: set it in the header (top right).';
    if (e.code === Code.Unavailable && !e.rawMessage) return 'The Adagio API is unreachable.';
    return e.rawMessage || Code[e.code];
  }
  if (e instanceof Error) return e.message;
  return String(e);
}
