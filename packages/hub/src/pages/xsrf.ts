// Cross-site request forgery protection for the pages, as JupyterHub's `_xsrf`: a random
// browser nonce in an HttpOnly `_xsrf` cookie, and in every form a token that is an HMAC of that
// nonce and the login session. A form posted from another site has neither; a token stolen from
// one session or browser is worth nothing in another. The Origin header, when sent, must be ours.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { readCookie } from '../auth/sessions.ts';

export const xsrfCookieName = '_xsrf';

export class Xsrf {
  readonly #secret: Buffer;
  readonly #path: string;

  constructor(secret: Buffer, path: string) {
    this.#secret = secret;
    this.#path = path;
  }

  /** The browser's nonce, and a Set-Cookie for a new one when it has none (or a malformed one). */
  nonce(req: IncomingMessage, secure: boolean): { nonce: string; setCookie: string | undefined } {
    const existing = readCookie(req.headers.cookie, xsrfCookieName);
    if (existing && /^[A-Za-z0-9_-]{32}$/.test(existing)) return { nonce: existing, setCookie: undefined };
    const nonce = randomBytes(24).toString('base64url');
    return {
      nonce,
      setCookie: `${xsrfCookieName}=${nonce}; Path=${this.#path}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`,
    };
  }

  /** The token a form of this browser and session carries. */
  token(nonce: string, session: string): string {
    return createHmac('sha256', this.#secret).update(`${nonce}\0${session}`).digest('base64url');
  }

  /** Whether a state-changing request carries this browser's and session's token, from our origin. */
  check(req: IncomingMessage, given: string | null, session: string): boolean {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string;
      try {
        host = new URL(origin).host;
      } catch {
        return false;
      }
      const forwarded = req.headers['x-forwarded-host'];
      const hosts = [req.headers.host, ...(typeof forwarded === 'string' ? forwarded.split(',') : [])];
      if (!hosts.some((h) => h?.trim() === host)) return false;
    } else if (origin === 'null') {
      return false;
    }
    const nonce = readCookie(req.headers.cookie, xsrfCookieName);
    if (!nonce || !given) return false;
    const expected = Buffer.from(this.token(nonce, session));
    const actual = Buffer.from(given);
    return expected.length === actual.length && timingSafeEqual(expected, actual);
  }
}
