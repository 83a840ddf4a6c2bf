// API tokens (stored as SHA-256 hashes), OAuth clients and the hub's own secrets.
import type { Queryable } from './database.ts';
import { nowIso, type TokenRow } from './rows.ts';

export interface TokenOwnerRow extends TokenRow {
  owner_name: string;
  owner_admin: number;
  spawner_name: string | null;
  /** Comma-separated names of the roles assigned to the owner (directly or through groups). */
  owner_roles: string | null;
}

/**
 * One indexed lookup for the whole request identity: the token, its owner's name (user or
 * service), its server, and the roles assigned to the owner.
 */
export async function findTokenByHash(db: Queryable, hashed: string): Promise<TokenOwnerRow | undefined> {
  const concat = db.dialect === 'sqlite' ? "group_concat(r.name, ',')" : "string_agg(r.name, ',')";
  return db.get<TokenOwnerRow>(
    `SELECT t.*, COALESCE(u.name, s.name) AS owner_name, COALESCE(u.admin, s.admin) AS owner_admin, sp.name AS spawner_name,
       (SELECT ${concat} FROM role_assignments a JOIN roles r ON r.id = a.role_id
         WHERE (a.kind = 'user' AND a.entity_id = t.user_id)
            OR (a.kind = 'service' AND a.entity_id = t.service_id)
            OR (a.kind = 'group' AND t.user_id IS NOT NULL AND a.entity_id IN (SELECT group_id FROM user_group_map WHERE user_id = t.user_id))) AS owner_roles
     FROM api_tokens t
     LEFT JOIN users u ON u.id = t.user_id
     LEFT JOIN services s ON s.id = t.service_id
     LEFT JOIN spawners sp ON sp.id = t.spawner_id
     WHERE t.hashed = ?`,
    [hashed],
  );
}

export interface NewToken {
  hashed: string;
  prefix: string;
  userId?: number;
  serviceId?: number;
  spawnerId?: number;
  clientId?: string;
  sessionId?: string;
  note: string;
  scopes: string[];
  expiresAt?: string;
}

export async function insertToken(db: Queryable, token: NewToken): Promise<TokenRow> {
  return (await db.get<TokenRow>(
    `INSERT INTO api_tokens (hashed, prefix, user_id, service_id, spawner_id, client_id, session_id, note, scopes, created, expires_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
    [
      token.hashed,
      token.prefix,
      token.userId ?? null,
      token.serviceId ?? null,
      token.spawnerId ?? null,
      token.clientId ?? 'jupyterhub',
      token.sessionId ?? null,
      token.note,
      JSON.stringify(token.scopes),
      nowIso(),
      token.expiresAt ?? null,
    ],
  ))!;
}

export async function tokensOfUser(db: Queryable, userId: number): Promise<TokenRow[]> {
  return db.all<TokenRow>(
    'SELECT * FROM api_tokens WHERE user_id = ? ORDER BY COALESCE(last_activity, created), id',
    [userId],
  );
}

export async function findToken(db: Queryable, id: number): Promise<TokenRow | undefined> {
  return db.get<TokenRow>('SELECT * FROM api_tokens WHERE id = ?', [id]);
}

export async function deleteToken(db: Queryable, id: number): Promise<void> {
  await db.run('DELETE FROM api_tokens WHERE id = ?', [id]);
}

export async function deleteTokensOfClient(db: Queryable, userId: number, clientId: string): Promise<void> {
  await db.run('DELETE FROM api_tokens WHERE user_id = ? AND client_id = ?', [userId, clientId]);
}

export async function deleteSpawnerTokens(db: Queryable, spawnerId: number): Promise<void> {
  await db.run('DELETE FROM api_tokens WHERE spawner_id = ?', [spawnerId]);
}

export async function deleteServiceTokens(db: Queryable, serviceId: number): Promise<void> {
  await db.run('DELETE FROM api_tokens WHERE service_id = ?', [serviceId]);
}

export async function deleteExpiredTokens(db: Queryable): Promise<number> {
  return db.run('DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < ?', [nowIso()]);
}

export async function touchToken(db: Queryable, id: number, when: string): Promise<void> {
  await db.run('UPDATE api_tokens SET last_activity = ? WHERE id = ?', [when, id]);
}

export interface OAuthClientRow {
  id: number;
  identifier: string;
  description: string | null;
  secret_hash: string | null;
  redirect_uri: string | null;
  allowed_scopes: string;
  spawner_id: number | null;
}

export async function upsertOAuthClient(
  db: Queryable,
  client: {
    identifier: string;
    description: string;
    redirectUri: string;
    allowedScopes: string[];
    secretHash: string;
    spawnerId: number;
  },
): Promise<void> {
  await db.run(
    `INSERT INTO oauth_clients (identifier, description, redirect_uri, allowed_scopes, secret_hash, spawner_id) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (identifier) DO UPDATE SET description = excluded.description, redirect_uri = excluded.redirect_uri,
       allowed_scopes = excluded.allowed_scopes, secret_hash = excluded.secret_hash, spawner_id = excluded.spawner_id`,
    [
      client.identifier,
      client.description,
      client.redirectUri,
      JSON.stringify(client.allowedScopes),
      client.secretHash,
      client.spawnerId,
    ],
  );
}

export async function findOAuthClient(
  db: Queryable,
  identifier: string,
): Promise<OAuthClientRow | undefined> {
  return db.get<OAuthClientRow>('SELECT * FROM oauth_clients WHERE identifier = ?', [identifier]);
}

export async function insertOAuthCode(
  db: Queryable,
  code: {
    codeHash: string;
    clientId: string;
    userId: number;
    redirectUri: string;
    scopes: string[];
    expiresAt: string;
  },
): Promise<void> {
  await db.run(
    'INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, scopes, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
    [
      code.codeHash,
      code.clientId,
      code.userId,
      code.redirectUri,
      JSON.stringify(code.scopes),
      code.expiresAt,
    ],
  );
}

/** Takes a code: returns it and deletes it, so it is used once. */
export async function takeOAuthCode(db: Queryable, codeHash: string) {
  const row = await db.get<{
    id: number;
    client_id: string;
    user_id: number;
    redirect_uri: string;
    scopes: string;
    expires_at: string;
  }>('SELECT * FROM oauth_codes WHERE code_hash = ?', [codeHash]);
  if (!row) return undefined;
  const deleted = await db.run('DELETE FROM oauth_codes WHERE id = ?', [row.id]);
  return deleted === 1 ? row : undefined;
}

export async function deleteOAuthClient(db: Queryable, identifier: string): Promise<void> {
  await db.run('DELETE FROM oauth_clients WHERE identifier = ?', [identifier]);
}

/** A secret kept in the database so every hub process shares it (the cookie secret). */
export async function getOrCreateSecret(db: Queryable, name: string, create: () => string): Promise<string> {
  await db.run('INSERT INTO hub_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [
    name,
    create(),
  ]);
  return (await db.get<{ value: string }>('SELECT value FROM hub_secrets WHERE name = ?', [name]))!.value;
}
