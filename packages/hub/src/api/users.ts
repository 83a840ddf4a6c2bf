// /hub/api/user, /users, /users/{name}, /users/{name}/activity.
import { normalizeUsername, validUsername } from '../auth/authenticators.ts';
import type { UserRow } from '../db/rows.ts';
import * as spawnerDb from '../db/spawners.ts';
import * as users from '../db/users.ts';
import { HttpError } from '../errors.ts';
import { type ApiContext, checkUserModel, isObject, needsScope } from './context.ts';
import { readJson, sendEmpty, sendJson } from './http.ts';
import { modelsWithRelations, userModels } from './models.ts';

export function includeStopped(context: ApiContext): boolean {
  const value = context.query.get('include_stopped_servers');
  return value !== null && !['0', 'false'].includes(value.toLowerCase());
}

export function modelOptions(context: ApiContext) {
  return {
    baseUrl: context.hub.config.baseUrl,
    parsed: context.identity!.parsed,
    includeStoppedServers: includeStopped(context),
  };
}

export async function requireUser(context: ApiContext, name: string, message?: string): Promise<UserRow> {
  const user = await users.findUser(context.hub.db, name);
  if (!user) throw new HttpError(404, message ?? 'Not Found');
  return user;
}

export function pagination(context: ApiContext, accepts: boolean): { offset: number; limit: number } {
  const { pageDefaultLimit, pageMaxLimit } = context.hub.config;
  const offsetText = context.query.get('offset');
  const limitText = context.query.get('limit');
  const offset = offsetText === null ? 0 : Math.abs(Number.parseInt(offsetText, 10));
  let limit =
    limitText === null
      ? accepts
        ? pageDefaultLimit
        : pageMaxLimit
      : Math.abs(Number.parseInt(limitText, 10));
  if (
    !Number.isFinite(offset) ||
    !Number.isFinite(limit) ||
    !/^-?\d+$/.test(offsetText ?? '0') ||
    !/^-?\d+$/.test(limitText ?? '1')
  ) {
    throw new HttpError(400, 'Invalid argument type, offset and limit must be integers');
  }
  limit = Math.min(Math.max(limit, 1), pageMaxLimit);
  // Past every row anyway; a larger number is no integer the databases bind (was a 500).
  return { offset: Math.min(offset, Number.MAX_SAFE_INTEGER), limit };
}

export function acceptsPagination(context: ApiContext): boolean {
  return (context.req.headers.accept ?? '').includes('application/jupyterhub-pagination+json');
}

const hostPattern =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The origin the client asked for (JupyterHub's request.full_url(), which jupyterhub-idle-culler
 * follows to the next page) — but only a Host that is a host name or address with a port; any
 * other Host (a path, credentials, spaces) gives the hub's own connect URL, never an echo.
 */
function requestOrigin(context: ApiContext): string {
  const host = context.req.headers.host?.trim() ?? '';
  const forwarded = String(context.req.headers['x-forwarded-proto'] ?? '')
    .split(',')[0]!
    .trim()
    .toLowerCase();
  const scheme = forwarded === 'https' || forwarded === 'http' ? forwarded : 'http';
  if (host.length <= 261 && hostPattern.test(host)) return `${scheme}://${host}`;
  return new URL(context.hub.config.hubConnectUrl).origin;
}

export function paginated(
  context: ApiContext,
  items: unknown[],
  offset: number,
  limit: number,
  total: number,
) {
  const nextOffset = offset + limit;
  let next: Record<string, unknown> | null = null;
  if (nextOffset < total) {
    const url = new URL(`${context.url.pathname}${context.url.search}`, requestOrigin(context));
    url.searchParams.set('offset', String(nextOffset));
    url.searchParams.set('limit', String(limit));
    next = { offset: nextOffset, limit, url: url.href };
  }
  return { items, _pagination: { offset, limit, total, next } };
}

export async function getSelf(context: ApiContext): Promise<void> {
  const identity = context.identity;
  if (!identity) throw new HttpError(403, 'Forbidden');
  const { hub } = context;
  // Every token may identify its owner (JupyterHub's identify scopes), without them showing in `scopes`.
  const parsed = new Map(identity.parsed);
  let model: Record<string, unknown>;
  if (identity.kind === 'user') {
    const user = (await users.findUserById(hub.db, identity.id))!;
    parsed.set('read:users:name', 'all');
    parsed.set('read:users:groups', 'all');
    const own = parsed.get('read:users');
    if (own !== 'all') parsed.set('read:users', own ?? { user: new Set([user.name]) });
    const [m] = await userModels(hub.db, [user], {
      ...modelOptions(context),
      parsed: restrictTo(parsed, user.name),
    });
    model = m!;
  } else {
    model = {
      kind: 'service',
      name: identity.name,
      admin: identity.admin,
      roles: await hub.identity.serviceRoles(identity.id, identity.admin),
    };
  }
  model.session_id = identity.token?.session_id ?? null;
  model.scopes = [...identity.expanded].sort();
  sendJson(context.res, 200, model);
}

/** For /user: the identify scopes apply to the requester only. */
function restrictTo(parsed: Map<string, unknown>, name: string) {
  const out = new Map(parsed);
  for (const scope of ['read:users:name', 'read:users:groups']) {
    if (parsed.get(scope) === 'all') out.set(scope, { user: new Set([name]) });
  }
  return out as typeof parsed as never;
}

export async function listUsers(context: ApiContext): Promise<void> {
  const access = await needsScope(context, ['list:users']);
  const state = context.query.get('state') ?? undefined;
  if (state !== undefined && !['active', 'ready', 'inactive'].includes(state)) {
    throw new HttpError(400, `Unrecognized state filter: '${state}'`);
  }
  const accepts = acceptsPagination(context);
  const { offset, limit } = pagination(context, accepts);
  // A plain list has no total to show: it is not counted.
  const query: users.UserListQuery = {
    offset,
    limit,
    state: state as users.UserStateFilter,
    withTotal: accepts,
  };
  const nameFilter = context.query.get('name_filter');
  if (nameFilter) query.nameFilter = nameFilter;
  if (access === 'some') {
    const filter = context.identity!.parsed.get('list:users');
    if (filter && filter !== 'all') {
      if (filter.server || filter.service) throw new HttpError(403, 'Forbidden');
      if (filter.user) query.onlyUsers = [...filter.user];
      if (filter.group) query.onlyGroups = [...filter.group];
    }
  }
  const { rows, total, withRelations } = await users.listUsers(context.hub.db, query);
  const items = withRelations
    ? await modelsWithRelations(rows as users.UserWithRelations[], modelOptions(context))
    : await userModels(context.hub.db, rows, modelOptions(context));
  sendJson(context.res, 200, accepts ? paginated(context, items, offset, limit, total) : items);
}

export async function createUsers(context: ApiContext): Promise<void> {
  await needsScope(context, ['admin:users']);
  const body = await readJson(context.req);
  if (!isObject(body) || !Array.isArray(body.usernames) || body.usernames.length === 0) {
    throw new HttpError(400, 'Must specify at least one user to create');
  }
  const { usernames, ...rest } = body;
  checkUserModel(rest);
  const admin = rest.admin === true;
  const invalid: string[] = [];
  const names: string[] = [];
  for (const raw of usernames) {
    const name = typeof raw === 'string' ? normalizeUsername(raw) : '';
    if (!validUsername(name)) invalid.push(String(raw));
    else if (!names.includes(name)) names.push(name);
  }
  if (invalid.length === 1) throw new HttpError(400, `Invalid username: ${invalid[0]}`);
  if (invalid.length > 1) throw new HttpError(400, `Invalid usernames: ${invalid.join(', ')}`);
  const created = await context.hub.db.transaction((tx) => users.createUsers(tx, names, admin));
  if (created.length === 0) throw new HttpError(409, `All ${usernames.length} users already exist`);
  context.hub.log.info({ users: created.length, admin }, 'users created');
  sendJson(context.res, 201, await userModels(context.hub.db, created, modelOptions(context)));
}

export async function getUser(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(
    context,
    [
      'read:users',
      'read:users:name',
      'read:servers',
      'read:users:groups',
      'read:users:activity',
      'read:roles:users',
    ],
    { user: name, userGroups: () => groupsOf(context, name) },
  );
  const user = await users.findUserWithRelations(context.hub.db, name);
  if (!user) throw new HttpError(404, 'Not Found');
  const [model] = await modelsWithRelations([user], modelOptions(context));
  sendJson(context.res, 200, model);
}

async function groupsOf(context: ApiContext, name: string): Promise<string[]> {
  const user = await users.findUser(context.hub.db, name);
  return user ? users.groupsOfUser(context.hub.db, user.id) : [];
}

export async function createUser(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['admin:users'], { user: name });
  const body = await readJson(context.req);
  if (body !== undefined && !isObject(body)) throw new HttpError(400, 'Body must be a JSON dict or empty');
  if (body) checkUserModel(body);
  if (await users.findUser(context.hub.db, name)) throw new HttpError(409, `User ${name} already exists`);
  if (!validUsername(name) || normalizeUsername(name) !== name)
    throw new HttpError(400, `Invalid username: ${name}`);
  let user: UserRow;
  try {
    user = await users.createUser(context.hub.db, name, body?.admin === true);
  } catch {
    throw new HttpError(409, `User ${name} already exists`);
  }
  const [model] = await userModels(context.hub.db, [user], modelOptions(context));
  sendJson(context.res, 201, model);
}

export async function patchUser(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['admin:users'], { user: name });
  const user = await requireUser(context, name);
  const body = await readJson(context.req);
  if (!isObject(body)) throw new HttpError(400, 'Body must be a JSON dict');
  checkUserModel(body);
  if (typeof body.name === 'string' && body.name !== name) {
    if (!validUsername(body.name)) throw new HttpError(400, `Invalid username: ${body.name}`);
    if (await users.findUser(context.hub.db, body.name)) {
      throw new HttpError(400, `User ${body.name} already exists, username must be unique`);
    }
  }
  const fields: { name?: string; admin?: boolean } = {};
  if (typeof body.name === 'string') fields.name = body.name;
  if (typeof body.admin === 'boolean') fields.admin = body.admin;
  await users.updateUser(context.hub.db, user.id, fields);
  const updated = (await users.findUserById(context.hub.db, user.id))!;
  const [model] = await userModels(context.hub.db, [updated], modelOptions(context));
  if (model) model.auth_state = null;
  sendJson(context.res, 200, model);
}

export async function deleteUser(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['delete:users'], { user: name });
  const { hub } = context;
  const user = await requireUser(context, name);
  if (context.identity?.kind === 'user' && context.identity.name === name) {
    throw new HttpError(400, 'Cannot delete yourself!');
  }
  const servers = (await users.spawnersOfUsers(hub.db, [user.id])).get(user.id) ?? [];
  for (const server of servers) {
    if (server.pending === 'stop')
      throw new HttpError(400, `${name}'s server is in the process of stopping, please wait.`);
    // A spawn in flight would finish after the user row is gone: a process nobody stops.
    if (server.pending === 'spawn')
      throw new HttpError(400, `${name}'s server is in the process of starting, please wait.`);
  }
  for (const server of servers) {
    if (server.url === null) continue;
    if (!(await spawnerDb.markStopPending(hub.db, server.id, hub.spawns.owner))) {
      // Claimed since the read above, by a stop or a spawn through another request or replica.
      throw new HttpError(400, `${name}'s server is in the process of stopping or starting, please wait.`);
    }
    await hub.spawns.stop(user, server);
  }
  // JupyterHub's delete_spawners: storage that outlives a stop (KubeSpawner's delete_pvc).
  for (const server of (await users.spawnersOfUsers(hub.db, [user.id])).get(user.id) ?? []) {
    if (!(await hub.spawns.deleteForever(user, server)))
      throw new HttpError(400, `${name}'s server is in the process of starting, please wait.`);
  }
  await users.deleteUser(hub.db, user.id);
  hub.log.info({ user: name }, 'user deleted');
  sendEmpty(context.res, 204);
}

function parseTimestamp(value: unknown): string {
  if (typeof value !== 'string') throw new HttpError(400, `Not a valid timestamp: ${JSON.stringify(value)}`);
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);
  if (Number.isNaN(ms)) throw new HttpError(400, `Not a valid timestamp: '${value}'`);
  const when = new Date(ms).toISOString();
  if (ms - Date.now() > 59 * 60_000) {
    throw new HttpError(400, `Rejecting activity from more than an hour in the future: ${when}`);
  }
  return when;
}

export async function postActivity(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['users:activity'], { user: name });
  const { db } = context.hub;
  // The body is read first, its errors kept until the user is known to exist (404 comes first).
  let body: unknown;
  let bodyError: unknown;
  try {
    body = await readJson(context.req);
  } catch (error) {
    bodyError = error;
  }
  // The common report, a user's own timestamp: found and moved forward in one statement.
  if (bodyError === undefined && isObject(body) && !body.servers && body.last_activity) {
    let when: string | undefined;
    try {
      when = parseTimestamp(body.last_activity);
    } catch {
      // Reported below, after the user is known to exist.
    }
    if (when !== undefined) {
      if (!(await users.touchUserByName(db, name, when))) throw new HttpError(404, `No such user: '${name}'`);
      context.res.writeHead(200, { 'content-length': 0 });
      context.res.end();
      return;
    }
  }
  const user = await requireUser(context, name, `No such user: '${name}'`);
  if (bodyError !== undefined) throw bodyError;
  if (!isObject(body)) throw new HttpError(400, 'body must be a json dict');
  const { last_activity: lastActivity, servers } = body;
  if (!lastActivity && !servers) {
    throw new HttpError(400, 'body must contain at least one of `last_activity` or `servers`');
  }
  const serverUpdates: Array<[number, string]> = [];
  if (servers) {
    const shape = 'servers must be a dict of the form {server_name: {last_activity: timestamp}}';
    if (!isObject(servers)) throw new HttpError(400, shape);
    for (const [serverName, info] of Object.entries(servers)) {
      const row = await spawnerDb.findSpawner(db, user.id, serverName);
      if (!row) throw new HttpError(400, `No such server '${serverName}' for user ${name}`);
      if (!isObject(info) || !('last_activity' in info)) throw new HttpError(400, shape);
      serverUpdates.push([row.id, parseTimestamp(info.last_activity)]);
    }
  }
  if (lastActivity) await users.touchUser(db, user.id, parseTimestamp(lastActivity));
  for (const [id, when] of serverUpdates) await spawnerDb.touchSpawner(db, id, when);
  context.res.writeHead(200, { 'content-length': 0 });
  context.res.end();
}
