// /hub/api/, /info, /proxy, /services, /groups, /shutdown.
import { validUsername } from '../auth/authenticators.ts';
import { allows } from '../auth/scopes.ts';
import * as roleDb from '../db/roles.ts';
import type { ServiceRow } from '../db/rows.ts';
import * as users from '../db/users.ts';
import { DatabaseUnavailableError, HttpError } from '../errors.ts';
import { hubVersion } from '../hub.ts';
import { type HubRoute, hubRoutes } from '../proxy-api.ts';
import { type ApiContext, isObject, needsScope } from './context.ts';
import { readJson, sendEmpty, sendJson } from './http.ts';
import { acceptsPagination, paginated, pagination } from './users.ts';

export async function root(context: ApiContext): Promise<void> {
  sendJson(context.res, 200, { version: hubVersion });
}

export async function info(context: ApiContext): Promise<void> {
  await needsScope(context, ['read:hub']);
  const { config } = context.hub;
  sendJson(context.res, 200, {
    version: hubVersion,
    python: 'none (seahorse-hub on Node.js)',
    node: process.version,
    sys_executable: process.execPath,
    spawner: { class: 'seahorse.LocalProcessSpawner', version: hubVersion },
    authenticator: { class: `seahorse.${config.authenticatorClass}`, version: hubVersion },
  });
}

export async function getProxy(context: ApiContext): Promise<void> {
  await needsScope(context, ['proxy']);
  const all = hubRoutes(await context.hub.proxy.getRoutes());
  const accepts = acceptsPagination(context);
  const { offset, limit } = pagination(context, accepts);
  const routes: Record<string, HubRoute> = {};
  if (offset === 0 && all.size < limit) {
    for (const [key, route] of all) routes[key] = route;
  } else {
    for (const key of [...all.keys()].sort().slice(offset, offset + limit)) routes[key] = all.get(key)!;
  }
  if (!accepts) {
    sendJson(context.res, 200, routes);
    return;
  }
  sendJson(context.res, 200, { ...paginated(context, [], offset, limit, all.size), items: routes });
}

export async function postProxy(context: ApiContext): Promise<void> {
  await needsScope(context, ['proxy']);
  await context.hub.checkRoutes?.();
  sendEmpty(context.res, 200);
}

export async function patchProxy(context: ApiContext): Promise<void> {
  await needsScope(context, ['proxy']);
  const body = await readJson(context.req);
  if (!isObject(body)) throw new HttpError(400, 'Body must be a JSON dict');
  const { hub } = context;
  const { api_url: apiUrl, auth_token: token } = body;
  if (apiUrl !== undefined && typeof apiUrl !== 'string')
    throw new HttpError(400, 'api_url must be a string');
  if (token !== undefined && typeof token !== 'string')
    throw new HttpError(400, 'auth_token must be a string');
  if (apiUrl !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(apiUrl);
    } catch {
      parsed = undefined;
    }
    if (
      !parsed ||
      !/^https?:$/.test(parsed.protocol) ||
      parsed.username ||
      parsed.password ||
      parsed.search ||
      parsed.hash
    )
      throw new HttpError(
        400,
        'api_url must be an http:// or https:// URL without credentials, query or fragment',
      );
  }
  // It goes into an Authorization header: a CR, LF or NUL would break every later proxy call.
  if (token !== undefined && !/^[\x21-\x7e]{1,4096}$/.test(token))
    throw new HttpError(400, 'auth_token must be 1 to 4096 printable ASCII characters without spaces');
  const undo =
    apiUrl !== undefined || token !== undefined ? hub.reconfigureProxy?.(apiUrl, token) : undefined;
  try {
    await hub.checkRoutes?.();
  } catch (error) {
    if (!undo || error instanceof DatabaseUnavailableError) throw error;
    // A proxy the hub cannot use must not cut it off from the one it had.
    undo();
    throw new HttpError(
      400,
      `The proxy at ${apiUrl ?? 'the current api_url'} cannot be used (${(error as Error).message}); the proxy settings are unchanged`,
    );
  }
  sendEmpty(context.res, 200);
}

async function serviceModel(context: ApiContext, service: ServiceRow) {
  const { parsed } = context.identity!;
  const target = { service: service.name };
  const model: Record<string, unknown> = { kind: 'service', name: service.name };
  const full = await context.hub.identity.serviceRoles(service.id, service.admin === 1);
  const readAll = await allows(parsed, 'read:services', target);
  const readName = readAll || (await allows(parsed, 'read:services:name', target));
  if (!readName) return undefined;
  model.admin = service.admin === 1;
  if (readAll) {
    Object.assign(model, {
      roles: full,
      url: service.url ?? '',
      prefix: service.url ? `${context.hub.config.baseUrl}services/${service.name}/` : '',
      command: [],
      pid: 0,
      info: JSON.parse(service.info),
      display: service.display === 1,
    });
  }
  return model;
}

export async function listServices(context: ApiContext): Promise<void> {
  await needsScope(context, ['list:services']);
  const out: Record<string, unknown> = {};
  for (const service of await roleDb.allServices(context.hub.db)) {
    const model = await serviceModel(context, service);
    if (model) out[service.name] = model;
  }
  sendJson(context.res, 200, out);
}

export async function getService(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['read:services', 'read:services:name'], { service: name });
  const service = await roleDb.findService(context.hub.db, name);
  if (!service) throw new HttpError(404, 'Not Found');
  sendJson(context.res, 200, await serviceModel(context, service));
}

async function groupModel(context: ApiContext, group: { id: number; name: string; properties: string }) {
  const { hub } = context;
  const parsed = context.identity!.parsed;
  const model: Record<string, unknown> = { kind: 'group', name: group.name };
  if (await allows(parsed, 'read:roles:groups', { group: group.name }))
    model.roles = await roleDb.rolesOf(hub.db, 'group', group.id);
  if (await allows(parsed, 'read:groups', { group: group.name })) {
    model.users = await users.groupMembers(hub.db, group.id);
    model.properties = JSON.parse(group.properties);
  }
  return model;
}

export async function listGroups(context: ApiContext): Promise<void> {
  await needsScope(context, ['list:groups']);
  const accepts = acceptsPagination(context);
  const { offset, limit } = pagination(context, accepts);
  const { rows, total } = await users.listGroups(context.hub.db, offset, limit);
  const filter = context.identity!.parsed.get('list:groups');
  const visible =
    filter === 'all' || filter === undefined ? rows : rows.filter((g) => filter.group?.has(g.name));
  const items = [];
  for (const group of visible) items.push(await groupModel(context, group));
  sendJson(context.res, 200, accepts ? paginated(context, items, offset, limit, total) : items);
}

function memberNames(body: unknown): string[] {
  if (body === undefined) return [];
  if (!isObject(body)) throw new HttpError(400, 'Body must be a JSON dict');
  const list = body.users ?? [];
  if (!Array.isArray(list) || list.some((u) => typeof u !== 'string'))
    throw new HttpError(400, `group.users must be a list, not ${typeof list}`);
  return list as string[];
}

async function userIds(context: ApiContext, names: string[]): Promise<number[]> {
  const ids: number[] = [];
  for (const name of names) {
    const user = await users.findUser(context.hub.db, name);
    if (!user) throw new HttpError(400, `No such user: ${name}`);
    ids.push(user.id);
  }
  return ids;
}

export async function createGroups(context: ApiContext): Promise<void> {
  await needsScope(context, ['admin:groups']);
  const body = await readJson(context.req);
  if (!isObject(body) || !Array.isArray(body.groups) || body.groups.length === 0) {
    throw new HttpError(400, 'Must specify at least one group to create');
  }
  const members = await userIds(context, memberNames({ users: body.users ?? [] }));
  const created = [];
  for (const name of body.groups) {
    if (typeof name !== 'string' || !validUsername(name))
      throw new HttpError(400, `Invalid group name: ${name}`);
    if (await users.findGroup(context.hub.db, name)) throw new HttpError(409, `Group ${name} already exists`);
    const group = await users.createGroup(context.hub.db, name);
    for (const id of members) await users.addGroupMember(context.hub.db, group.id, id);
    created.push(await groupModel(context, group));
  }
  sendJson(context.res, 201, created);
}

export async function getGroup(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['read:groups', 'read:groups:name', 'read:roles:groups'], { group: name });
  const group = await users.findGroup(context.hub.db, name);
  if (!group) throw new HttpError(404, `No such group: ${name}`);
  sendJson(context.res, 200, await groupModel(context, group));
}

export async function createGroup(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['admin:groups'], { group: name });
  const members = await userIds(context, memberNames(await readJson(context.req)));
  if (await users.findGroup(context.hub.db, name)) throw new HttpError(409, `Group ${name} already exists`);
  if (!validUsername(name)) throw new HttpError(400, `Invalid group name: ${name}`);
  const group = await users.createGroup(context.hub.db, name);
  for (const id of members) await users.addGroupMember(context.hub.db, group.id, id);
  sendJson(context.res, 201, await groupModel(context, group));
}

export async function deleteGroup(context: ApiContext): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['delete:groups'], { group: name });
  const group = await users.findGroup(context.hub.db, name);
  if (!group) throw new HttpError(404, `No such group: ${name}`);
  await users.deleteGroup(context.hub.db, group.id);
  sendEmpty(context.res, 204);
}

export async function changeMembers(context: ApiContext, add: boolean): Promise<void> {
  const name = context.params[0]!;
  await needsScope(context, ['groups'], { group: name });
  const group = await users.findGroup(context.hub.db, name);
  if (!group) throw new HttpError(404, `No such group: ${name}`);
  const ids = await userIds(context, memberNames(await readJson(context.req)));
  for (const id of ids) {
    if (add) await users.addGroupMember(context.hub.db, group.id, id);
    else await users.removeGroupMember(context.hub.db, group.id, id);
  }
  sendJson(context.res, 200, await groupModel(context, group));
}

export async function shutdown(context: ApiContext): Promise<void> {
  await needsScope(context, ['shutdown']);
  const body = (await readJson(context.req)) ?? {};
  if (!isObject(body)) throw new HttpError(400, 'body must be a JSON dict');
  const flag = (key: string, fallback: boolean) => {
    const value = body[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean')
      throw new HttpError(400, `${key} must be true or false, not ${JSON.stringify(value)}`);
    return value;
  };
  const servers = flag('servers', context.hub.config.cleanupServers);
  const proxy = flag('proxy', context.hub.config.cleanupProxy);
  sendJson(context.res, 202, { status: 202, message: 'Shutting down Hub' });
  setImmediate(() => context.hub.onShutdown({ servers, proxy }));
}
