// Who may log in: the header authenticator (a user name set by a trusted reverse proxy such as
// oauth2-proxy), the shared-password authenticator, and JupyterHub's allow/admin/block lists.
import { createHash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { HubConfig } from '../config.ts';
import { ConfigError } from '../errors.ts';

/**
 * JupyterHub's default username rules: non-empty, no slash, no whitespace, bounded length; and
 * no control characters (NUL is a 500 on PostgreSQL, the others reach logs and environments).
 */
export function validUsername(name: string): boolean {
  return (
    name.length > 0 &&
    name.length <= 255 &&
    !/[/\s?#%\p{Cc}]/u.test(name) &&
    // A lone surrogate (`"\ud800"` in JSON) cannot be stored: it would become U+FFFD.
    !/[\uD800-\uDFFF]/u.test(name) &&
    name !== '.' &&
    name !== '..'
  );
}

/** JupyterHub normalizes user names to lower case. */
export function normalizeUsername(name: string): string {
  return name.trim().toLowerCase();
}

export class Authenticator {
  readonly #config: HubConfig['auth'];
  readonly kind: HubConfig['authenticatorClass'];
  readonly #trusted: BlockList;

  constructor(kind: HubConfig['authenticatorClass'], config: HubConfig['auth']) {
    this.kind = kind;
    this.#config = config;
    this.#trusted = new BlockList();
    for (const source of config.trustedSources) addSource(this.#trusted, source);
    if (kind === 'password' && !config.password) {
      throw new ConfigError(
        'the password authenticator needs a password: set JUPYTER_PASSWORD (or PasswordAuthenticator.password)',
      );
    }
  }

  get headerName(): string {
    return this.#config.headerName;
  }

  get autoLogin(): boolean {
    return this.#config.autoLogin || this.kind === 'header';
  }

  isAdmin(name: string): boolean {
    return this.#config.adminUsers.includes(name);
  }

  /** JupyterHub 5's check_allowed: allow_all, or listed as admin or allowed; never when blocked. */
  isAllowed(name: string, existing: boolean): boolean {
    if (this.#config.blockedUsers.includes(name)) return false;
    if (this.#config.allowAll) return true;
    if (this.#config.adminUsers.includes(name) || this.#config.allowedUsers.includes(name)) return true;
    // JupyterHub's allow_existing_users: users added through the API may log in.
    return existing && this.#config.allowedUsers.length > 0;
  }

  /**
   * Whether the user header may be believed: the peer must be trusted and, when it relays
   * (X-Forwarded-For), so must the address it reports — the hub's own proxy is on loopback, so
   * without that check anyone reaching the public port would be "from" a trusted address.
   */
  trustsSource(address: string | undefined, forwardedFor?: string | string[]): boolean {
    if (!this.#trustsAddress(address)) return false;
    const header = Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor;
    if (header === undefined) return true;
    const hops = header.split(',');
    return this.#trustsAddress(hops[hops.length - 1]!.trim());
  }

  #trustsAddress(address: string | undefined): boolean {
    if (!address) return false;
    const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
    if (isIPv4(plain)) return this.#trusted.check(plain, 'ipv4');
    if (isIPv6(plain)) return this.#trusted.check(plain, 'ipv6');
    return false;
  }

  /**
   * Whether the request carries the front proxy's shared secret (always true when none is
   * configured). Users' own code can reach the hub from a trusted address (loopback, with local
   * servers) but does not know the secret. Compared in constant time.
   */
  hasProxySecret(headers: Record<string, string | string[] | undefined>): boolean {
    const secret = this.#config.sharedSecret;
    if (!secret) return true;
    const raw = headers[this.#config.secretHeaderName];
    if (typeof raw !== 'string') return false;
    const a = createHash('sha256').update(raw).digest();
    const b = createHash('sha256').update(secret).digest();
    return timingSafeEqual(a, b);
  }

  /** Constant-time check of the shared password (hashes first, so lengths do not leak). */
  checkPassword(given: string): boolean {
    if (this.kind === 'dummy' && !this.#config.password) return true;
    const a = createHash('sha256').update(given).digest();
    const b = createHash('sha256').update(this.#config.password).digest();
    return timingSafeEqual(a, b) && this.#config.password.length > 0;
  }
}

function addSource(list: BlockList, source: string): void {
  const [address, bits] = source.split('/');
  const type = address && isIPv4(address) ? 'ipv4' : address && isIPv6(address) ? 'ipv6' : undefined;
  if (!address || !type) {
    throw new ConfigError(`HeaderAuthenticator.trusted_sources: '${source}' is not an IP address or CIDR`);
  }
  if (bits === undefined) {
    list.addAddress(address, type);
    return;
  }
  const prefix = Number(bits);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > (type === 'ipv4' ? 32 : 128)) {
    throw new ConfigError(`HeaderAuthenticator.trusted_sources: '${source}' has an invalid prefix length`);
  }
  list.addSubnet(address, prefix, type);
}
