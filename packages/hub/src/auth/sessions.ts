// Login sessions in signed cookies: `<cookie_id>.<expiry ms>.<HMAC>`, the cookie id being the
// user's (rotated at logout, which ends every session of theirs). The secret lives in the
// database (or cookie_secret_file) so every hub process accepts the same cookies.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const loginCookieName = 'jupyterhub-hub-login';

export class SessionSigner {
  readonly #secret: Buffer;
  readonly #maxAgeMs: number;

  constructor(secret: Buffer, maxAgeMs: number) {
    this.#secret = secret;
    this.#maxAgeMs = maxAgeMs;
  }

  #mac(payload: string): string {
    return createHmac('sha256', this.#secret).update(payload).digest('base64url');
  }

  sign(cookieId: string, now = Date.now()): string {
    const payload = `${cookieId}.${now + this.#maxAgeMs}`;
    return `${payload}.${this.#mac(payload)}`;
  }

  /** The cookie id of a valid, unexpired cookie, or undefined. */
  verify(value: string, now = Date.now()): string | undefined {
    const last = value.lastIndexOf('.');
    if (last <= 0) return undefined;
    const payload = value.slice(0, last);
    const given = Buffer.from(value.slice(last + 1), 'base64url');
    const expected = Buffer.from(this.#mac(payload), 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    const dot = payload.indexOf('.');
    const expires = Number(payload.slice(dot + 1));
    if (!Number.isFinite(expires) || expires < now) return undefined;
    return payload.slice(0, dot);
  }

  cookie(value: string, path: string, secure: boolean): string {
    const maxAge = Math.floor(this.#maxAgeMs / 1000);
    return `${loginCookieName}=${value}; Path=${path}; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure ? '; Secure' : ''}`;
  }

  static clear(path: string): string {
    return `${loginCookieName}=; Path=${path}; HttpOnly; SameSite=Lax; Max-Age=0`;
  }
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
