// Users and groups.
import { randomBytes } from 'node:crypto';
import type { Queryable } from './database.ts';
import {
  type GroupRow,
  inList,
  inTextList,
  listParam,
  nowIso,
  type SpawnerRow,
  type UserRow,
} from './rows.ts';

export type UserStateFilter = 'active' | 'ready' | 'inactive' | undefined;

export interface UserListQuery {
  offset: number;
  limit: number;
  state: UserStateFilter;
  nameFilter?: string;
  /** Only these users (from a filtered list:users scope), or any. */
  onlyUsers?: string[];
  onlyGroups?: string[];
  /** False when the caller does not need the total (a plain list): it is not counted then. */
  withTotal?: boolean;
}

/** The columns of a user that its JSON model shows. */
export type UserModelRow = Pick<UserRow, 'id' | 'name' | 'admin' | 'created' | 'last_activity'>;
const userModelColumns = 'users.id, users.name, users.admin, users.created, users.last_activity';

/** The columns of a server that its JSON model shows. */
export type SpawnerModelRow = Pick<
  SpawnerRow,
  'name' | 'url' | 'ready' | 'pending' | 'started' | 'last_activity' | 'user_options' | 'state'
>;
const spawnerModelColumns = [
  'name',
  'url',
  'ready',
  'pending',
  'started',
  'last_activity',
  'user_options',
  'state',
];

/** A user with its groups, servers and assigned roles as JSON lists; null (PostgreSQL) is none. */
export interface UserWithRelations extends UserModelRow {
  groups_json: string | null;
  spawners_json: string | null;
  roles_json: string | null;
}

/** Columns with a user's groups, servers and assigned roles as JSON text: one query per page. */
function relationColumns(db: Queryable): string {
  const spawner = `${db.dialect === 'sqlite' ? 'json_object' : 'json_build_object'}(${spawnerModelColumns.map((c) => `'${c}', s.${c}`).join(', ')})`;
  if (db.dialect === 'sqlite') {
    return `
      (SELECT json_group_array(name) FROM (SELECT g.name FROM user_group_map m JOIN groups g ON g.id = m.group_id WHERE m.user_id = users.id ORDER BY g.id)) AS groups_json,
      (SELECT json_group_array(json(j)) FROM (SELECT ${spawner} AS j FROM spawners s WHERE s.user_id = users.id ORDER BY s.id)) AS spawners_json,
      (SELECT json_group_array(name) FROM (SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id WHERE a.kind = 'user' AND a.entity_id = users.id ORDER BY r.id)) AS roles_json`;
  }
  // json_agg of no rows is NULL: most users have no groups, servers or roles, and a NULL costs
  // nothing to send or to parse.
  return `
      (SELECT json_agg(g.name ORDER BY g.id)::text FROM user_group_map m JOIN groups g ON g.id = m.group_id WHERE m.user_id = users.id) AS groups_json,
      (SELECT json_agg(${spawner} ORDER BY s.id)::text FROM spawners s WHERE s.user_id = users.id) AS spawners_json,
      (SELECT json_agg(r.name ORDER BY r.id)::text FROM role_assignments a JOIN roles r ON r.id = a.role_id WHERE a.kind = 'user' AND a.entity_id = users.id) AS roles_json`;
}

export async function findUserWithRelations(
  db: Queryable,
  name: string,
): Promise<UserWithRelations | undefined> {
  return db.get<UserWithRelations>(
    `SELECT ${userModelColumns}, ${relationColumns(db)} FROM users WHERE users.name = ?`,
    [name],
  );
}

export async function findUser(db: Queryable, name: string): Promise<UserRow | undefined> {
  return db.get<UserRow>('SELECT * FROM users WHERE name = ?', [name]);
}

export async function findUserById(db: Queryable, id: number): Promise<UserRow | undefined> {
  return db.get<UserRow>('SELECT * FROM users WHERE id = ?', [id]);
}

export async function createUser(db: Queryable, name: string, admin: boolean): Promise<UserRow> {
  const row = await db.get<UserRow>(
    'INSERT INTO users (name, admin, created, cookie_id) VALUES (?, ?, ?, ?) RETURNING *',
    [name, admin ? 1 : 0, nowIso(), randomBytes(16).toString('hex')],
  );
  return row!;
}

/**
 * The user of this name, created (with `admin`) when there is none. Safe against a concurrent
 * create of the same name — another request, another hub replica — which a find followed by
 * an insert is not (its insert fails on the unique name).
 */
export async function findOrCreateUser(db: Queryable, name: string, admin: boolean): Promise<UserRow> {
  const created = await db.get<UserRow>(
    'INSERT INTO users (name, admin, created, cookie_id) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING *',
    [name, admin ? 1 : 0, nowIso(), randomBytes(16).toString('hex')],
  );
  if (created) return created;
  const existing = await findUser(db, name);
  if (!existing) throw new Error(`user ${name} was neither created nor found`);
  return existing;
}

/** Creates the users that do not exist yet, in one statement per chunk; returns the created rows. */
export async function createUsers(db: Queryable, names: string[], admin: boolean): Promise<UserRow[]> {
  const created: UserRow[] = [];
  const now = nowIso();
  for (let i = 0; i < names.length; i += 200) {
    const chunk = names.slice(i, i + 200);
    const values = chunk.map(() => '(?, ?, ?, ?)').join(', ');
    const params = chunk.flatMap((name) => [name, admin ? 1 : 0, now, randomBytes(16).toString('hex')]);
    const rows = await db.all<UserRow>(
      `INSERT INTO users (name, admin, created, cookie_id) VALUES ${values} ON CONFLICT (name) DO NOTHING RETURNING *`,
      params,
    );
    created.push(...rows);
  }
  return created.sort((a, b) => a.id - b.id);
}

export async function updateUser(db: Queryable, id: number, fields: { name?: string; admin?: boolean }) {
  if (fields.name !== undefined) await db.run('UPDATE users SET name = ? WHERE id = ?', [fields.name, id]);
  if (fields.admin !== undefined)
    await db.run('UPDATE users SET admin = ? WHERE id = ?', [fields.admin ? 1 : 0, id]);
}

export async function deleteUser(db: Queryable, id: number): Promise<void> {
  await db.run("DELETE FROM role_assignments WHERE kind = 'user' AND entity_id = ?", [id]);
  await db.run('DELETE FROM users WHERE id = ?', [id]);
}

/** Moves last_activity forward only. */
export async function touchUser(db: Queryable, id: number, when: string): Promise<void> {
  await db.run(
    'UPDATE users SET last_activity = ? WHERE id = ? AND (last_activity IS NULL OR last_activity < ?)',
    [when, id, when],
  );
}

/**
 * Moves a user's last_activity forward by name, in one statement; false when there is no such
 * user. A later timestamp already there stays (the row is written with its own value then).
 */
export async function touchUserByName(db: Queryable, name: string, when: string): Promise<boolean> {
  const row = await db.get<{ id: number }>(
    `UPDATE users SET last_activity = CASE WHEN last_activity IS NULL OR last_activity < ? THEN ? ELSE last_activity END
     WHERE name = ? RETURNING id`,
    [when, when, name],
  );
  return row !== undefined;
}

function listWhere(db: Queryable, query: UserListQuery): { where: string; params: Array<string> } {
  const clauses: string[] = [];
  const params: string[] = [];
  if (query.state === 'active' || query.state === 'ready') {
    const ready = query.state === 'ready' ? ' AND s.ready = 1' : '';
    clauses.push(
      `EXISTS (SELECT 1 FROM spawners s WHERE s.user_id = users.id AND s.url IS NOT NULL${ready})`,
    );
  } else if (query.state === 'inactive') {
    clauses.push('NOT EXISTS (SELECT 1 FROM spawners s WHERE s.user_id = users.id AND s.url IS NOT NULL)');
  }
  if (query.nameFilter) {
    clauses.push(db.dialect === 'sqlite' ? "name LIKE ? ESCAPE '\\'" : "name ILIKE ? ESCAPE '\\'");
    params.push(`%${query.nameFilter.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
  }
  if (query.onlyUsers || query.onlyGroups) {
    const either: string[] = [];
    if (query.onlyUsers) {
      either.push(inTextList(db, 'name'));
      params.push(listParam(query.onlyUsers));
    }
    if (query.onlyGroups) {
      either.push(
        `id IN (SELECT m.user_id FROM user_group_map m JOIN groups g ON g.id = m.group_id WHERE ${inTextList(db, 'g.name')})`,
      );
      params.push(listParam(query.onlyGroups));
    }
    clauses.push(`(${either.join(' OR ')})`);
  }
  return { where: clauses.length ? `WHERE ${clauses.join(' AND ')}` : '', params };
}

export async function listUsers(
  db: Queryable,
  query: UserListQuery,
): Promise<{ rows: UserModelRow[] | UserWithRelations[]; total: number; withRelations: boolean }> {
  const { where, params } = listWhere(db, query);
  if (db.dialect === 'postgres') return listUsersWithRelations(db, query, where, params);
  // In-process (SQLite) the batched queries of userModels cost less CPU than building JSON in SQL.
  const rows = await db.all<UserModelRow>(
    `SELECT ${userModelColumns} FROM users ${where} ORDER BY users.id LIMIT ? OFFSET ?`,
    [...params, query.limit, query.offset],
  );
  // The total is counted only when asked and a page is full or starts past 0: a short first page is all.
  let total = rows.length;
  if (query.withTotal !== false && (rows.length === query.limit || query.offset > 0))
    total = await countWhere(db, where, params);
  return { rows, total, withRelations: false };
}

/**
 * Over the network (PostgreSQL) one round trip: the page, its relations and (when asked) the
 * total. The page is cut first; then each relation is read for the page's users at once and
 * joined, instead of three subqueries per user (600 for a page of 200: 8 ms of the database's
 * time against 2 with the joins).
 */
async function listUsersWithRelations(
  db: Queryable,
  query: UserListQuery,
  where: string,
  params: string[],
): Promise<{ rows: UserWithRelations[]; total: number; withRelations: true }> {
  const spawner = `json_build_object(${spawnerModelColumns.map((c) => `'${c}', s.${c}`).join(', ')})`;
  const withTotal = query.withTotal !== false;
  const rows = await db.all<UserWithRelations & { total: number }>(
    `WITH page AS (SELECT ${userModelColumns} FROM users ${where} ORDER BY users.id LIMIT ? OFFSET ?)
     SELECT page.*, g.j AS groups_json, s.j AS spawners_json, r.j AS roles_json${withTotal ? `, (SELECT COUNT(*) FROM users ${where}) AS total` : ''}
     FROM page
     LEFT JOIN (SELECT m.user_id, json_agg(g.name ORDER BY g.id)::text AS j FROM user_group_map m JOIN groups g ON g.id = m.group_id
       WHERE m.user_id IN (SELECT id FROM page) GROUP BY m.user_id) g ON g.user_id = page.id
     LEFT JOIN (SELECT s.user_id, json_agg(${spawner} ORDER BY s.id)::text AS j FROM spawners s
       WHERE s.user_id IN (SELECT id FROM page) GROUP BY s.user_id) s ON s.user_id = page.id
     LEFT JOIN (SELECT a.entity_id, json_agg(r.name ORDER BY r.id)::text AS j FROM role_assignments a JOIN roles r ON r.id = a.role_id
       WHERE a.kind = 'user' AND a.entity_id IN (SELECT id FROM page) GROUP BY a.entity_id) r ON r.entity_id = page.id
     ORDER BY page.id`,
    (withTotal
      ? [...params, query.limit, query.offset, ...params]
      : [...params, query.limit, query.offset]) as never,
  );
  if (!withTotal) return { rows, total: rows.length, withRelations: true };
  // A page past the end has no row to carry the total.
  const total = rows.length > 0 ? rows[0]!.total : query.offset > 0 ? await countWhere(db, where, params) : 0;
  return { rows, total, withRelations: true };
}

async function countWhere(db: Queryable, where: string, params: string[]): Promise<number> {
  return (await db.get<{ n: number }>(`SELECT COUNT(*) AS n FROM users ${where}`, params))?.n ?? 0;
}

export async function countUsers(db: Queryable): Promise<number> {
  return (await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM users'))?.n ?? 0;
}

/** Group names per user id, for a page of users. */
export async function groupsOfUsers(db: Queryable, ids: number[]): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  if (ids.length === 0) return out;
  const rows = await db.all<{ user_id: number; name: string }>(
    `SELECT m.user_id, g.name FROM user_group_map m JOIN groups g ON g.id = m.group_id WHERE ${inList(db, 'm.user_id')} ORDER BY g.id`,
    [listParam(ids)],
  );
  for (const row of rows) {
    const list = out.get(row.user_id);
    if (list) list.push(row.name);
    else out.set(row.user_id, [row.name]);
  }
  return out;
}

export async function spawnersOfUsers(db: Queryable, ids: number[]): Promise<Map<number, SpawnerRow[]>> {
  const out = new Map<number, SpawnerRow[]>();
  if (ids.length === 0) return out;
  const rows =
    ids.length === 1
      ? await db.all<SpawnerRow>('SELECT * FROM spawners WHERE user_id = ? ORDER BY id', [ids[0]!])
      : await db.all<SpawnerRow>(`SELECT * FROM spawners WHERE ${inList(db, 'user_id')} ORDER BY id`, [
          listParam(ids),
        ]);
  for (const row of rows) {
    const list = out.get(row.user_id);
    if (list) list.push(row);
    else out.set(row.user_id, [row]);
  }
  return out;
}

export async function listGroups(db: Queryable, offset: number, limit: number) {
  const rows = await db.all<GroupRow>('SELECT * FROM groups ORDER BY id LIMIT ? OFFSET ?', [limit, offset]);
  const total = (await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM groups'))?.n ?? 0;
  return { rows, total };
}

export async function findGroup(db: Queryable, name: string): Promise<GroupRow | undefined> {
  return db.get<GroupRow>('SELECT * FROM groups WHERE name = ?', [name]);
}

export async function createGroup(db: Queryable, name: string, properties: Record<string, unknown> = {}) {
  return (await db.get<GroupRow>('INSERT INTO groups (name, properties) VALUES (?, ?) RETURNING *', [
    name,
    JSON.stringify(properties),
  ]))!;
}

export async function deleteGroup(db: Queryable, id: number): Promise<void> {
  await db.run("DELETE FROM role_assignments WHERE kind = 'group' AND entity_id = ?", [id]);
  await db.run('DELETE FROM groups WHERE id = ?', [id]);
}

export async function groupMembers(db: Queryable, groupId: number): Promise<string[]> {
  const rows = await db.all<{ name: string }>(
    'SELECT u.name FROM user_group_map m JOIN users u ON u.id = m.user_id WHERE m.group_id = ? ORDER BY u.id',
    [groupId],
  );
  return rows.map((r) => r.name);
}

export async function addGroupMember(db: Queryable, groupId: number, userId: number): Promise<void> {
  await db.run('INSERT INTO user_group_map (user_id, group_id) VALUES (?, ?) ON CONFLICT DO NOTHING', [
    userId,
    groupId,
  ]);
}

export async function removeGroupMember(db: Queryable, groupId: number, userId: number): Promise<void> {
  await db.run('DELETE FROM user_group_map WHERE user_id = ? AND group_id = ?', [userId, groupId]);
}

export async function groupsOfUser(db: Queryable, userId: number): Promise<string[]> {
  return (await groupsOfUsers(db, [userId])).get(userId) ?? [];
}
