// Who is asking: a token (user's, service's or a server's) or a login cookie, resolved to an
// owner and the owner's scopes intersected with the token's — one indexed query per request,
// scope expansions memoized by their inputs (pure functions of the configured roles).
import type { IncomingMessage } from 'node:http';
import {
  expandScopes,
  intersectScopes,
  type ParsedScopes,
  parseScopes,
  type ScopeOwner,
} from './auth/scopes.ts';
import { loginCookieName, readCookie, type SessionSigner } from './auth/sessions.ts';
import { hashesEqual, hashToken, tokenFromRequest } from './auth/tokens.ts';
import type { Database } from './db/database.ts';
import { nowIso, type TokenRow } from './db/rows.ts';
import { findTokenByHash, type TokenOwnerRow, touchToken } from './db/tokens.ts';

export interface Identity {
  kind: 'user' | 'service';
  id: number;
  name: string;
  admin: boolean;
  token: TokenOwnerRow | undefined;
  /** Expanded scopes of the request (token ∩ owner). */
  expanded: Set<string>;
  parsed: ParsedScopes;
}

/** Role name → raw scopes, from JupyterHub's defaults and load_roles. */
export type RoleScopes = Map<string, string[]>;

const tokenActivityEveryMs = 60_000;

export class IdentityResolver {
  readonly #db: Database;
  readonly #roles: RoleScopes;
  readonly #sessions: SessionSigner;
  readonly #cache = new Map<string, { expanded: Set<string>; parsed: ParsedScopes }>();

  constructor(db: Database, roles: RoleScopes, sessions: SessionSigner) {
    this.#db = db;
    this.#roles = roles;
    this.#sessions = sessions;
  }

  /** Scopes of an owner from its role names. */
  ownerScopes(owner: ScopeOwner, roleNames: string[]): Set<string> {
    const raw: string[] = [];
    for (const role of roleNames) raw.push(...(this.#roles.get(role) ?? []));
    return expandScopes(raw, owner);
  }

  /** The roles a user holds: user, admin when admin, and assigned ones (directly or by group). */
  async userRoles(userId: number, admin: boolean): Promise<string[]> {
    const rows = await this.#db.all<{ name: string }>(
      `SELECT DISTINCT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id
       WHERE (a.kind = 'user' AND a.entity_id = ?)
          OR (a.kind = 'group' AND a.entity_id IN (SELECT group_id FROM user_group_map WHERE user_id = ?))`,
      [userId, userId],
    );
    const roles = admin ? ['admin', 'user'] : ['user'];
    for (const row of rows) if (!roles.includes(row.name)) roles.push(row.name);
    return roles;
  }

  async serviceRoles(serviceId: number, admin: boolean): Promise<string[]> {
    const rows = await this.#db.all<{ name: string }>(
      "SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id WHERE a.kind = 'service' AND a.entity_id = ?",
      [serviceId],
    );
    const roles = rows.map((r) => r.name);
    if (admin && !roles.includes('admin')) roles.unshift('admin');
    return roles;
  }

  #scopesFor(owner: ScopeOwner, roles: string[], tokenScopes: string[] | undefined) {
    const key = `${owner.kind}\0${owner.name}\0${owner.server ?? ''}\0${roles.join(',')}\0${tokenScopes?.join(',') ?? ''}`;
    let entry = this.#cache.get(key);
    if (!entry) {
      const ownerExpanded = this.ownerScopes(owner, roles);
      let expanded = ownerExpanded;
      if (tokenScopes && !(tokenScopes.length === 1 && tokenScopes[0] === 'inherit')) {
        expanded = intersectScopes(expandScopes(tokenScopes, owner, ownerExpanded), ownerExpanded);
      }
      entry = { expanded, parsed: parseScopes(expanded) };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(key, entry);
    }
    return entry;
  }

  /** The identity behind an API token, or undefined for an unknown or expired one. */
  async fromToken(token: string): Promise<Identity | undefined> {
    if (!token) return undefined;
    const hashed = hashToken(token);
    const row = await findTokenByHash(this.#db, hashed);
    if (!row || !hashesEqual(row.hashed, hashed)) return undefined;
    const now = nowIso();
    if (row.expires_at && row.expires_at < now) return undefined;
    if (row.owner_name === null) return undefined;
    if (!row.last_activity || Date.parse(now) - Date.parse(row.last_activity) > tokenActivityEveryMs) {
      await touchToken(this.#db, row.id, now);
    }
    const tokenScopes = JSON.parse(row.scopes) as string[];
    if (row.user_id !== null) {
      const admin = row.owner_admin === 1;
      const owner: ScopeOwner = { kind: 'user', name: row.owner_name };
      if (row.spawner_name !== null) owner.server = `${row.owner_name}/${row.spawner_name}`;
      const roles = admin ? ['admin', 'user'] : ['user'];
      for (const role of row.owner_roles?.split(',') ?? []) if (!roles.includes(role)) roles.push(role);
      const { expanded, parsed } = this.#scopesFor(owner, roles, tokenScopes);
      return { kind: 'user', id: row.user_id, name: row.owner_name, admin, token: row, expanded, parsed };
    }
    const admin = row.owner_admin === 1;
    const roles = [...new Set(row.owner_roles?.split(',') ?? [])];
    if (admin && !roles.includes('admin')) roles.unshift('admin');
    const { expanded, parsed } = this.#scopesFor(
      { kind: 'service', name: row.owner_name },
      roles,
      tokenScopes,
    );
    return {
      kind: 'service',
      id: row.service_id!,
      name: row.owner_name,
      admin,
      token: row,
      expanded,
      parsed,
    };
  }

  /** The identity of a user by a valid login cookie. */
  async fromCookie(cookieHeader: string | undefined): Promise<Identity | undefined> {
    const value = readCookie(cookieHeader, loginCookieName);
    if (!value) return undefined;
    const cookieId = this.#sessions.verify(value);
    if (!cookieId) return undefined;
    const user = await this.#db.get<{ id: number; name: string; admin: number }>(
      'SELECT id, name, admin FROM users WHERE cookie_id = ?',
      [cookieId],
    );
    if (!user) return undefined;
    const admin = user.admin === 1;
    const roles = await this.userRoles(user.id, admin);
    const { expanded, parsed } = this.#scopesFor({ kind: 'user', name: user.name }, roles, undefined);
    return { kind: 'user', id: user.id, name: user.name, admin, token: undefined, expanded, parsed };
  }

  /**
   * Token first; the login cookie only for safe methods, so a cross-site form cannot act —
   * unless `cookieAnyMethod` (the API, whose caller checks the Referer as JupyterHub 3.0 does).
   */
  async fromRequest(
    req: IncomingMessage,
    query: URLSearchParams | undefined,
    cookieAnyMethod = false,
  ): Promise<Identity | undefined> {
    const token = tokenFromRequest(req.headers.authorization, query);
    if (token) return this.fromToken(token);
    if (cookieAnyMethod || req.method === 'GET' || req.method === 'HEAD')
      return this.fromCookie(req.headers.cookie);
    return undefined;
  }

  /** Expanded scopes of a stored token, for the token model. */
  tokenScopes(token: TokenRow, owner: ScopeOwner, roles: string[]): string[] {
    return [...this.#scopesFor(owner, roles, JSON.parse(token.scopes) as string[]).expanded].sort();
  }
}
