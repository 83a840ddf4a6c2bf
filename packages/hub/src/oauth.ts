// The OAuth2 provider single-user servers log browsers in through: authorize (a logged-in user
// allowed to access the server gets a one-time code) and token (the server, authenticated with
// its API token as client secret, trades the code for an API token of that user).
import { randomBytes } from 'node:crypto';
import type { ApiContext } from './api/context.ts';
import { readJson, sendJson } from './api/http.ts';
import { allows } from './auth/scopes.ts';
import { hashesEqual, hashToken } from './auth/tokens.ts';
import { findSpawnerById } from './db/spawners.ts';
import * as tokens from './db/tokens.ts';
import { findUserById, groupsOfUser } from './db/users.ts';
import { HttpError } from './errors.ts';
import { forbiddenPage } from './pages/index.ts';

const codeLifetimeMs = 10 * 60_000;

export async function authorize(context: ApiContext): Promise<void> {
  const { hub, query, res, url } = context;
  const base = hub.config.baseUrl;
  const identity = context.identity?.token ? undefined : context.identity;
  if (identity?.kind !== 'user') {
    res.writeHead(302, {
      location: `${base}hub/login?next=${encodeURIComponent(url.pathname + url.search)}`,
    });
    res.end();
    return;
  }
  if (query.get('response_type') !== 'code') throw new HttpError(400, 'response_type must be code');
  const clientId = query.get('client_id') ?? '';
  const client = await tokens.findOAuthClient(hub.db, clientId);
  if (!client) throw new HttpError(400, `Invalid client_id: ${clientId}`);
  const redirectUri = query.get('redirect_uri') ?? client.redirect_uri ?? '';
  if (redirectUri !== client.redirect_uri)
    throw new HttpError(400, 'redirect_uri does not match the client’s');
  const spawner = client.spawner_id ? await findSpawnerById(hub.db, client.spawner_id) : undefined;
  const owner = spawner ? await findUserById(hub.db, spawner.user_id) : undefined;
  if (!spawner || !owner) throw new HttpError(500, 'OAuth configuration error');
  const allowed = await allows(identity.parsed, 'access:servers', {
    user: owner.name,
    server: `${owner.name}/${spawner.name}`,
    userGroups: () => groupsOfUser(hub.db, owner.id),
  });
  if (!allowed) {
    // A browser follows this redirect: it gets JupyterHub's HTML 403 page, not JSON.
    forbiddenPage(hub, res, `You do not have permission to access ${client.description ?? clientId}`);
    return;
  }
  const code = randomBytes(24).toString('hex');
  await tokens.insertOAuthCode(hub.db, {
    codeHash: hashToken(code),
    clientId,
    userId: identity.id,
    redirectUri,
    scopes: [
      ...(JSON.parse(client.allowed_scopes) as string[]),
      'read:users:name!user',
      'read:users:groups!user',
    ],
    expiresAt: new Date(Date.now() + codeLifetimeMs).toISOString(),
  });
  const target = new URL(redirectUri, 'http://placeholder.invalid');
  target.searchParams.set('code', code);
  const state = query.get('state');
  if (state !== null) target.searchParams.set('state', state);
  const location = redirectUri.startsWith('/') ? target.pathname + target.search : target.href;
  res.writeHead(302, { location, 'content-length': 0 });
  res.end();
}

async function readParams(context: ApiContext): Promise<URLSearchParams> {
  const type = context.req.headers['content-type'] ?? '';
  if (type.includes('application/json')) {
    const body = await readJson(context.req);
    const params = new URLSearchParams();
    if (body && typeof body === 'object') {
      for (const [key, value] of Object.entries(body)) if (typeof value === 'string') params.set(key, value);
    }
    return params;
  }
  let text = '';
  for await (const chunk of context.req as AsyncIterable<Buffer>) {
    text += chunk.toString();
    if (text.length > 64 * 1024) throw new HttpError(413, 'Request body too large');
  }
  const params = new URLSearchParams(text);
  // GitHub-style clients send the parameters in the URL.
  for (const [key, value] of context.query) if (!params.has(key)) params.set(key, value);
  return params;
}

export async function token(context: ApiContext): Promise<void> {
  const { hub } = context;
  const params = await readParams(context);
  if (params.get('grant_type') !== 'authorization_code') throw new HttpError(400, 'unsupported_grant_type');
  const clientId = params.get('client_id') ?? '';
  const client = await tokens.findOAuthClient(hub.db, clientId);
  const secret = params.get('client_secret') ?? '';
  if (!client?.secret_hash || !hashesEqual(client.secret_hash, hashToken(secret))) {
    throw new HttpError(403, 'invalid_client');
  }
  const code = await tokens.takeOAuthCode(hub.db, hashToken(params.get('code') ?? ''));
  if (
    !code ||
    code.client_id !== clientId ||
    code.expires_at < new Date().toISOString() ||
    code.redirect_uri !== (params.get('redirect_uri') ?? code.redirect_uri)
  ) {
    throw new HttpError(400, 'invalid_grant');
  }
  const accessToken = randomBytes(24).toString('hex');
  const scopes = JSON.parse(code.scopes) as string[];
  await tokens.insertToken(hub.db, {
    hashed: hashToken(accessToken),
    prefix: accessToken.slice(0, 4),
    userId: code.user_id,
    clientId,
    note: `OAuth token for ${clientId}`,
    scopes,
  });
  sendJson(context.res, 200, { access_token: accessToken, token_type: 'Bearer', scope: scopes.join(' ') });
}
