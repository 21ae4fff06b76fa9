import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';
import { AgentService } from '../gen/adagio/rpc/agent/agent_pb.js';

/**
 * What a bearer token lets its holder do. `people` (-api-token): everything.
 * `agent` (-agent-token): the agent API only (AgentService and /v0/agent/*),
 * so a token handed to every worker machine cannot start, cancel or read runs.
 */
export type Role = 'people' | 'agent';

export const UNAUTHENTICATED_MESSAGE = 'missing or wrong API token (Authorization: Bearer <token>)';
export const AGENT_ONLY_MESSAGE =
  'the agent token grants the agent API only; use the API token for this call';

/**
 * Bearer-token auth with roles. Tokens are compared through their SHA-256
 * digests with timingSafeEqual: equal-length inputs, so neither the length nor
 * a prefix of the token leaks through response timing.
 */
export class TokenCheck {
  private readonly digests: { digest: Buffer; role: Role }[];

  /** `tokens` are people tokens; `agentTokens` grant the agent API only. None at all means no auth. */
  constructor(tokens: readonly string[], agentTokens: readonly string[] = []) {
    this.digests = [
      ...tokens.filter((t) => t !== '').map((t) => ({ digest: digest(t), role: 'people' as const })),
      ...agentTokens.filter((t) => t !== '').map((t) => ({ digest: digest(t), role: 'agent' as const })),
    ];
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** The caller's role: `people` when auth is off, undefined for a missing or wrong token. */
  role(authorization: string | null | undefined): Role | undefined {
    if (!this.enabled) return 'people';
    const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    if (!match) return undefined;
    const given = digest(match[1]!.trim());
    let role: Role | undefined;
    // Compare against every token, without an early exit.
    for (const d of this.digests) if (timingSafeEqual(d.digest, given)) role ??= d.role;
    return role;
  }

  /** True when auth is off, or the Authorization header carries an accepted token of any role. */
  allows(authorization: string | null | undefined): boolean {
    return this.role(authorization) !== undefined;
  }

  interceptor(): Interceptor {
    return (next) => async (req) => {
      const role = this.role(req.header.get('authorization'));
      if (role === undefined) throw new ConnectError(UNAUTHENTICATED_MESSAGE, Code.Unauthenticated);
      if (role === 'agent' && req.service.typeName !== AgentService.typeName)
        throw new ConnectError(AGENT_ONLY_MESSAGE, Code.PermissionDenied);
      return next(req);
    };
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
