// JSON models of users, servers, tokens, groups and services, with JupyterHub's field names,
// filtered by what the request's scopes allow to be seen.
import { allows, type ParsedScopes } from '../auth/scopes.ts';
import type { Queryable } from '../db/database.ts';
import { inList, listParam, type TokenRow } from '../db/rows.ts';
import {
  groupsOfUsers,
  type SpawnerModelRow,
  spawnersOfUsers,
  type UserModelRow,
  type UserWithRelations,
} from '../db/users.ts';
import { serverPrefix } from '../spawns.ts';

export function serverModel(
  baseUrl: string,
  user: string,
  row: SpawnerModelRow,
  withState: boolean,
): Record<string, unknown> {
  const active = row.url !== null || row.pending !== null;
  const progress = row.name
    ? `${baseUrl}hub/api/users/${encodeURIComponent(user)}/servers/${encodeURIComponent(row.name)}/progress`
    : `${baseUrl}hub/api/users/${encodeURIComponent(user)}/server/progress`;
  const model: Record<string, unknown> = {
    name: row.name,
    full_name: `${user}/${row.name}`,
    last_activity: row.last_activity,
    started: row.started,
    pending: row.pending,
    ready: row.ready === 1 && row.pending === null,
    stopped: !active,
    url: serverPrefix(baseUrl, user, row.name),
    user_options: JSON.parse(row.user_options),
    progress_url: progress,
    full_url: null,
    full_progress_url: null,
  };
  if (withState) model.state = JSON.parse(row.state);
  return model;
}

const userAccess: Array<[string, string[]]> = [
  [
    'read:users',
    ['kind', 'name', 'admin', 'roles', 'groups', 'server', 'pending', 'created', 'last_activity'],
  ],
  ['read:users:name', ['kind', 'name', 'admin']],
  ['read:users:groups', ['kind', 'name', 'groups']],
  ['read:users:activity', ['kind', 'name', 'last_activity']],
  ['read:servers', ['kind', 'name', 'servers']],
  ['read:roles:users', ['kind', 'name', 'roles', 'admin']],
  ['admin:auth_state', ['kind', 'name', 'auth_state']],
];
const userKeyOrder = [
  'kind',
  'name',
  'admin',
  'roles',
  'groups',
  'server',
  'pending',
  'created',
  'last_activity',
  'auth_state',
  'servers',
];

export interface UserModelOptions {
  baseUrl: string;
  parsed: ParsedScopes;
  includeStoppedServers: boolean;
}

/**
 * What a request's scopes let it see of every user, when none of the scopes that matter is
 * filtered (an admin, the idle culler): worked out once per page instead of per user and field.
 * Undefined when some scope is filtered: then each user is checked on its own.
 */
interface UniformAccess {
  /** The visible keys of userKeyOrder, in order, without `servers`. */
  keys: string[];
  all: boolean;
  servers: boolean;
  serverState: boolean;
}

const accessScopes = [...userAccess.map(([scope]) => scope), 'admin:server_state'];
const uniformAccessCache = new WeakMap<ParsedScopes, UniformAccess | null>();

function uniformAccess(parsed: ParsedScopes): UniformAccess | undefined {
  let access = uniformAccessCache.get(parsed);
  if (access === undefined) {
    access = null;
    if (accessScopes.every((scope) => (parsed.get(scope) ?? 'all') === 'all')) {
      const allowed = new Set<string>();
      for (const [scope, keys] of userAccess) if (parsed.has(scope)) for (const key of keys) allowed.add(key);
      if (allowed.size > 0) {
        const keys = userKeyOrder.filter((key) => key !== 'servers' && allowed.has(key));
        access = {
          keys,
          all: keys.length === userKeyOrder.length - 1,
          servers: parsed.has('read:servers'),
          serverState: parsed.has('admin:server_state'),
        };
      }
    }
    uniformAccessCache.set(parsed, access);
  }
  return access ?? undefined;
}

/** Every key of a user's model, before the scopes choose which a caller sees. */
function fullUserModel(
  user: UserModelRow,
  groups: string[],
  spawners: SpawnerModelRow[],
  assigned: string[],
  baseUrl: string,
): Record<string, unknown> {
  const defaultServer = spawners.find((s) => s.name === '');
  const roles = user.admin === 1 ? ['admin', 'user'] : ['user'];
  for (const role of assigned) if (!roles.includes(role)) roles.push(role);
  return {
    kind: 'user',
    name: user.name,
    admin: user.admin === 1,
    roles,
    groups,
    server: defaultServer?.url && defaultServer.ready === 1 ? serverPrefix(baseUrl, user.name, '') : null,
    pending: defaultServer?.pending ?? null,
    created: user.created,
    last_activity: user.last_activity,
    auth_state: null,
  };
}

/** A user's model when the scopes see every user alike: no scope check per user. */
function uniformUserModel(
  access: UniformAccess,
  user: UserModelRow,
  groups: string[],
  spawners: SpawnerModelRow[],
  assigned: string[],
  options: UserModelOptions,
): Record<string, unknown> {
  const full = fullUserModel(user, groups, spawners, assigned, options.baseUrl);
  let model = full;
  if (!access.all) {
    model = {};
    for (const key of access.keys) model[key] = full[key];
  }
  if (!access.servers) return model;
  const servers: Record<string, unknown> = {};
  for (const spawner of spawners) {
    if (spawner.url === null && spawner.pending === null && !options.includeStoppedServers) continue;
    servers[spawner.name] = serverModel(options.baseUrl, user.name, spawner, access.serverState);
  }
  model.servers = servers;
  return model;
}

/** Shared by the users without servers or roles; only read, never put into a model. */
const emptyList: readonly never[] = [];

/** Models of users read with their relations (findUserWithRelations, listUsers): no more queries. */
export async function modelsWithRelations(
  users: UserWithRelations[],
  options: UserModelOptions,
): Promise<Array<Record<string, unknown>>> {
  const access = uniformAccess(options.parsed);
  const out: Array<Record<string, unknown>> = [];
  for (const user of users) {
    // NULL (PostgreSQL's json_agg of no rows) or '[]' is an empty list, without a parse.
    // The groups list goes into the model as it is: a fresh array each, never the shared empty one.
    const groups =
      user.groups_json === null || user.groups_json === '[]'
        ? []
        : (JSON.parse(user.groups_json) as string[]);
    const spawners = relationList<SpawnerModelRow>(user.spawners_json);
    const roles = relationList<string>(user.roles_json);
    const model = access
      ? uniformUserModel(access, user, groups, spawners, roles, options)
      : await userModel(user, groups, spawners, roles, options);
    if (model) out.push(model);
  }
  return out;
}

function relationList<T>(json: string | null): T[] {
  return json === null || json === '[]' ? (emptyList as unknown as T[]) : (JSON.parse(json) as T[]);
}

/** Models of users without their relations: three queries for the whole page, none per user. */
export async function userModels(
  db: Queryable,
  users: UserModelRow[],
  options: UserModelOptions,
): Promise<Array<Record<string, unknown>>> {
  const ids = users.map((u) => u.id);
  const [groups, spawners, assigned] = await Promise.all([
    groupsOfUsers(db, ids),
    spawnersOfUsers(db, ids),
    assignedRoles(db, ids),
  ]);
  const access = uniformAccess(options.parsed);
  const out: Array<Record<string, unknown>> = [];
  for (const user of users) {
    const userGroups = groups.get(user.id) ?? [];
    const userSpawners = spawners.get(user.id) ?? (emptyList as unknown as SpawnerModelRow[]);
    const userRoles = assigned.get(user.id) ?? (emptyList as unknown as string[]);
    const model = access
      ? uniformUserModel(access, user, userGroups, userSpawners, userRoles, options)
      : await userModel(user, userGroups, userSpawners, userRoles, options);
    if (model) out.push(model);
  }
  return out;
}

async function assignedRoles(db: Queryable, ids: number[]): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  if (ids.length === 0) return out;
  const rows = await db.all<{ entity_id: number; name: string }>(
    `SELECT a.entity_id, r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id WHERE a.kind = 'user' AND ${inList(db, 'a.entity_id')}`,
    [listParam(ids)],
  );
  for (const row of rows) {
    const list = out.get(row.entity_id);
    if (list) list.push(row.name);
    else out.set(row.entity_id, [row.name]);
  }
  return out;
}

export async function userModel(
  user: UserModelRow,
  groups: string[],
  spawners: SpawnerModelRow[],
  assigned: string[],
  options: UserModelOptions,
): Promise<Record<string, unknown> | undefined> {
  const target = { user: user.name, userGroups: async () => groups };
  const allowed = new Set<string>();
  for (const [scope, keys] of userAccess) {
    if (await allows(options.parsed, scope, target)) for (const key of keys) allowed.add(key);
  }
  if (allowed.size === 0) return undefined;
  const full = fullUserModel(user, groups, spawners, assigned, options.baseUrl);
  const model: Record<string, unknown> = {};
  for (const key of userKeyOrder) if (allowed.has(key) && key in full) model[key] = full[key];
  const servers: Record<string, unknown> = {};
  let anyServer = false;
  for (const spawner of spawners) {
    const active = spawner.url !== null || spawner.pending !== null;
    if (!active && !options.includeStoppedServers) continue;
    const server = `${user.name}/${spawner.name}`;
    if (
      !(await allows(options.parsed, 'read:servers', {
        user: user.name,
        server,
        userGroups: target.userGroups,
      }))
    ) {
      continue;
    }
    const withState = Boolean(
      await allows(options.parsed, 'admin:server_state', {
        user: user.name,
        server,
        userGroups: target.userGroups,
      }),
    );
    servers[spawner.name] = serverModel(options.baseUrl, user.name, spawner, withState);
    anyServer = true;
  }
  if (allowed.has('servers') || anyServer) model.servers = servers;
  return model;
}

export function tokenModel(
  token: TokenRow,
  owner: { kind: 'user' | 'service'; name: string },
  scopes: string[],
): Record<string, unknown> {
  return {
    [owner.kind]: owner.name,
    id: `a${token.id}`,
    kind: 'api_token',
    roles: [],
    scopes,
    created: token.created,
    last_activity: token.last_activity,
    expires_at: token.expires_at,
    note: token.note,
    session_id: token.session_id,
    oauth_client: token.client_id === 'jupyterhub' ? 'JupyterHub' : token.client_id,
  };
}
