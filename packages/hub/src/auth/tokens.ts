// API tokens: random, shown once, stored as SHA-256 (a token has 192 random bits, so an
// unsalted hash is safe and gives an indexed lookup), compared in constant time.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function newToken(): string {
  return randomBytes(24).toString('hex');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Constant-time equality of two hex hashes of the same length. */
export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** The token a request carries: `Authorization: token|bearer X`, or `?token=X` as JupyterHub allows. */
export function tokenFromRequest(
  authorization: string | undefined,
  query: URLSearchParams | undefined,
): string {
  if (authorization) {
    const space = authorization.indexOf(' ');
    if (space > 0) {
      const scheme = authorization.slice(0, space).toLowerCase();
      if (scheme === 'token' || scheme === 'bearer') return authorization.slice(space + 1).trim();
    }
  }
  return query?.get('token') ?? '';
}
