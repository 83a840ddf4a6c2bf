// /users/{name}/tokens and /users/{name}/tokens/{token_id}.
import { allows, expandScopes, intersectScopes, invalidScope } from '../auth/scopes.ts';
import { hashToken, newToken } from '../auth/tokens.ts';
import type { TokenRow, UserRow } from '../db/rows.ts';
import * as tokenDb from '../db/tokens.ts';
import { findUser } from '../db/users.ts';
import { HttpError } from '../errors.ts';
import { type ApiContext, isObject, needsScope } from './context.ts';
import { readJson, sendEmpty, sendJson } from './http.ts';
import { tokenModel } from './models.ts';
import { requireUser } from './users.ts';

async function model(context: ApiContext, user: UserRow, token: TokenRow) {
  const roles = await context.hub.identity.userRoles(user.id, user.admin === 1);
  const owner = { kind: 'user' as const, name: user.name };
  const server = token.spawner_id
    ? await context.hub.db.get<{ name: string }>('SELECT name FROM spawners WHERE id = ?', [token.spawner_id])
    : undefined;
  const scopes = context.hub.identity.tokenScopes(
    token,
    server ? { ...owner, server: `${user.name}/${server.name}` } : owner,
    roles,
  );
  return tokenModel(token, owner, scopes);
}

export async function listTokens(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['read:tokens'], { user: name });
  const user = await requireUser(context, name, `No such user: ${name}`);
  const now = new Date().toISOString();
  const models = [];
  for (const token of await tokenDb.tokensOfUser(context.hub.db, user.id)) {
    if (token.expires_at && token.expires_at < now) {
      await tokenDb.deleteToken(context.hub.db, token.id);
      continue;
    }
    models.push(await model(context, user, token));
  }
  sendJson(context.res, 200, { api_tokens: models });
}

export async function createToken(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  const { hub, identity } = context;
  const body = (await readJson(context.req)) ?? {};
  if (!isObject(body)) throw new HttpError(400, 'Body must be a JSON dict or empty');
  if (!identity) throw new HttpError(403, 'Forbidden');
  const user = await findUser(hub.db, name);
  const kind = identity.kind === 'user' ? 'User' : 'Service';
  if (!user || !(await allows(identity.parsed, 'tokens', { user: name }))) {
    throw new HttpError(403, `${kind} ${name} not found or no permissions to generate tokens`);
  }
  let note = typeof body.note === 'string' ? body.note : '';
  if (!note) {
    note = 'Requested via api';
    if (identity.kind !== 'user' || identity.name !== name) note += ` by ${identity.kind} ${identity.name}`;
  }
  let expiresAt: string | undefined;
  if (body.expires_in !== undefined && body.expires_in !== null) {
    // JupyterHub answers a negative or non-numeric expires_in with a 500; this is a 400.
    if (typeof body.expires_in !== 'number' || !Number.isFinite(body.expires_in) || body.expires_in <= 0) {
      throw new HttpError(400, 'expires_in must be a positive number of seconds');
    }
    expiresAt = new Date(Date.now() + body.expires_in * 1000).toISOString();
  }
  let scopes: string[] = ['inherit'];
  const roles = body.roles;
  if (body.scopes !== undefined || roles !== undefined) {
    scopes = [];
    if (roles !== undefined) {
      if (!Array.isArray(roles) || roles.some((r) => typeof r !== 'string'))
        throw new HttpError(400, 'roles must be a list of role names');
      for (const role of roles as string[]) {
        const raw = hub.roleScopes.get(role);
        if (!raw) throw new HttpError(400, `Role ${role} does not exist`);
        scopes.push(...raw);
      }
    }
    if (body.scopes !== undefined) {
      if (!Array.isArray(body.scopes) || body.scopes.some((s) => typeof s !== 'string')) {
        throw new HttpError(400, 'scopes must be a list of strings');
      }
      for (const scope of body.scopes as string[]) {
        const problem = invalidScope(scope);
        if (problem) throw new HttpError(400, problem);
        scopes.push(scope);
      }
    }
  }
  // A token may hold only what both its owner and the requester hold — the default
  // `inherit` too, or a token limited to `tokens` could mint one with all of its owner's.
  const ownerRoles = await hub.identity.userRoles(user.id, user.admin === 1);
  const owner = { kind: 'user' as const, name: user.name };
  const ownerScopes = hub.identity.ownerScopes(owner, ownerRoles);
  const wanted = expandScopes(scopes, owner, ownerScopes);
  const granted = intersectScopes(intersectScopes(wanted, ownerScopes), identity.expanded);
  const missing = [...wanted].filter((s) => !granted.has(s));
  if (missing.length > 0) {
    throw new HttpError(
      403,
      `Not assigning requested scopes ${missing.sort().join(', ')} not held by ${kind.toLowerCase()} ${identity.name}`,
    );
  }
  const secret = newToken();
  const row = await tokenDb.insertToken(hub.db, {
    hashed: hashToken(secret),
    prefix: secret.slice(0, 4),
    userId: user.id,
    note,
    scopes,
    ...(expiresAt ? { expiresAt } : {}),
  });
  hub.log.info({ user: name, by: identity.name, tokenId: `a${row.id}` }, 'API token created');
  sendJson(context.res, 201, { ...(await model(context, user, row)), token: secret });
}

async function findTokenOf(context: ApiContext, user: UserRow, tokenId: string): Promise<TokenRow> {
  const notFound = `No such token ${tokenId} for user ${user.name}`;
  if (!/^a\d+$/.test(tokenId)) throw new HttpError(404, notFound);
  const token = await tokenDb.findToken(context.hub.db, Number(tokenId.slice(1)));
  if (!token || token.user_id !== user.id) throw new HttpError(404, notFound);
  return token;
}

export async function getToken(context: ApiContext): Promise<void> {
  const [name, tokenId] = context.params as [string, string];
  await needsScope(context, ['read:tokens'], { user: name });
  const user = await requireUser(context, name, `No such user: ${name}`);
  sendJson(context.res, 200, await model(context, user, await findTokenOf(context, user, tokenId)));
}

export async function deleteToken(context: ApiContext): Promise<void> {
  const [name, tokenId] = context.params as [string, string];
  await needsScope(context, ['tokens'], { user: name });
  const user = await requireUser(context, name, `No such user: ${name}`);
  const token = await findTokenOf(context, user, tokenId);
  // Deleting an OAuth token deletes every token of that client, as JupyterHub does.
  if (token.client_id !== 'jupyterhub')
    await tokenDb.deleteTokensOfClient(context.hub.db, user.id, token.client_id);
  else await tokenDb.deleteToken(context.hub.db, token.id);
  sendEmpty(context.res, 204);
}
