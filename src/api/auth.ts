import { createHash, timingSafeEqual } from 'node:crypto';
import { Code, ConnectError, type Interceptor } from '@connectrpc/connect';

/**
 * Bearer-token auth. Tokens are compared through their SHA-256 digests with
 * timingSafeEqual: equal-length inputs, so neither the length nor a prefix of
 * the token leaks through response timing.
 */
export class TokenCheck {
  private readonly digests: Buffer[];

  /** Several tokens may be accepted (e.g. one for people, one for agents). */
  constructor(tokens: readonly string[]) {
    this.digests = tokens.filter((t) => t !== '').map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** True when auth is off, or the Authorization header carries an accepted token. */
  allows(authorization: string | null | undefined): boolean {
    if (!this.enabled) return true;
    const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
    if (!match) return false;
    const given = digest(match[1]!.trim());
    let ok = false;
    // Compare against every token, without an early exit.
    for (const d of this.digests) ok = timingSafeEqual(d, given) || ok;
    return ok;
  }

  interceptor(): Interceptor {
    return (next) => async (req) => {
      if (!this.allows(req.header.get('authorization')))
        throw new ConnectError(
          'missing or wrong API token (Authorization: Bearer <token>)',
          Code.Unauthenticated,
        );
      return next(req);
    };
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}
