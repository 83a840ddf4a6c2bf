// Roles, their assignments, and services.
import type { Queryable } from './database.ts';
import type { RoleRow, ServiceRow } from './rows.ts';

export type RoleHolder = 'user' | 'service' | 'group';

export async function upsertRole(db: Queryable, name: string, description: string, scopes: string[]) {
  await db.run(
    `INSERT INTO roles (name, description, scopes) VALUES (?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET description = excluded.description, scopes = excluded.scopes`,
    [name, description, JSON.stringify(scopes)],
  );
  return (await db.get<RoleRow>('SELECT * FROM roles WHERE name = ?', [name]))!;
}

export async function allRoles(db: Queryable): Promise<RoleRow[]> {
  return db.all<RoleRow>('SELECT * FROM roles ORDER BY id');
}

export async function assignRole(db: Queryable, roleId: number, kind: RoleHolder, entityId: number) {
  await db.run(
    'INSERT INTO role_assignments (role_id, kind, entity_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
    [roleId, kind, entityId],
  );
}

export async function clearAssignments(db: Queryable, roleId: number): Promise<void> {
  await db.run('DELETE FROM role_assignments WHERE role_id = ?', [roleId]);
}

/** Names of the roles assigned to an entity directly (not the implicit user/admin roles). */
export async function rolesOf(db: Queryable, kind: RoleHolder, entityId: number): Promise<string[]> {
  const rows = await db.all<{ name: string }>(
    'SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id WHERE a.kind = ? AND a.entity_id = ? ORDER BY r.id',
    [kind, entityId],
  );
  return rows.map((r) => r.name);
}

/** Roles a user holds through their groups. */
export async function groupRolesOfUser(db: Queryable, userId: number): Promise<string[]> {
  const rows = await db.all<{ name: string }>(
    `SELECT DISTINCT r.name FROM user_group_map m
     JOIN role_assignments a ON a.kind = 'group' AND a.entity_id = m.group_id
     JOIN roles r ON r.id = a.role_id WHERE m.user_id = ?`,
    [userId],
  );
  return rows.map((r) => r.name);
}

export async function upsertService(
  db: Queryable,
  service: {
    name: string;
    admin: boolean;
    url: string | null;
    info: string;
    display: boolean;
    oauthClientId: string | null;
  },
): Promise<ServiceRow> {
  await db.run(
    `INSERT INTO services (name, admin, url, info, display, oauth_client_id) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET admin = excluded.admin, url = excluded.url, info = excluded.info,
       display = excluded.display, oauth_client_id = excluded.oauth_client_id`,
    [
      service.name,
      service.admin ? 1 : 0,
      service.url,
      service.info,
      service.display ? 1 : 0,
      service.oauthClientId,
    ],
  );
  return (await db.get<ServiceRow>('SELECT * FROM services WHERE name = ?', [service.name]))!;
}

export async function allServices(db: Queryable): Promise<ServiceRow[]> {
  return db.all<ServiceRow>('SELECT * FROM services ORDER BY id');
}

export async function findService(db: Queryable, name: string): Promise<ServiceRow | undefined> {
  return db.get<ServiceRow>('SELECT * FROM services WHERE name = ?', [name]);
}

export async function deleteServicesExcept(db: Queryable, keep: string[]): Promise<void> {
  const services = await allServices(db);
  for (const service of services) {
    if (!keep.includes(service.name)) {
      await db.run("DELETE FROM role_assignments WHERE kind = 'service' AND entity_id = ?", [service.id]);
      await db.run('DELETE FROM services WHERE id = ?', [service.id]);
    }
  }
}
