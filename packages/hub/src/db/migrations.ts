// Numbered schema migrations, applied in order at start and by `seahorse-hub upgrade-db`.
// `{pk}` is the dialect's auto-increment primary key. Timestamps are ISO 8601 text (UTC) and
// booleans integers in both dialects, so every query reads the same rows.
import type { Database } from './database.ts';

export interface Migration {
  version: number;
  description: string;
  sql: string;
}

export const migrations: Migration[] = [
  {
    version: 1,
    description: 'users, groups, services, roles, servers, tokens, OAuth clients, secrets',
    sql: `
CREATE TABLE users (
  id {pk},
  name TEXT NOT NULL UNIQUE,
  admin INTEGER NOT NULL DEFAULT 0,
  created TEXT NOT NULL,
  last_activity TEXT,
  cookie_id TEXT NOT NULL UNIQUE,
  auth_state TEXT
);
CREATE TABLE groups (
  id {pk},
  name TEXT NOT NULL UNIQUE,
  properties TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE user_group_map (
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  group_id INTEGER NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_group_map_group ON user_group_map(group_id);
CREATE TABLE services (
  id {pk},
  name TEXT NOT NULL UNIQUE,
  admin INTEGER NOT NULL DEFAULT 0,
  url TEXT,
  info TEXT NOT NULL DEFAULT '{}',
  display INTEGER NOT NULL DEFAULT 1,
  oauth_client_id TEXT
);
CREATE TABLE roles (
  id {pk},
  name TEXT NOT NULL UNIQUE,
  description TEXT,
  scopes TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE role_assignments (
  role_id INTEGER NOT NULL REFERENCES roles(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  entity_id INTEGER NOT NULL,
  PRIMARY KEY (kind, entity_id, role_id)
);
CREATE TABLE spawners (
  id {pk},
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT '{}',
  url TEXT,
  ready INTEGER NOT NULL DEFAULT 0,
  pending TEXT,
  pending_since TEXT,
  started TEXT,
  last_activity TEXT,
  user_options TEXT NOT NULL DEFAULT '{}',
  progress TEXT NOT NULL DEFAULT '[]',
  failure TEXT,
  UNIQUE (user_id, name)
);
CREATE TABLE oauth_clients (
  id {pk},
  identifier TEXT NOT NULL UNIQUE,
  description TEXT,
  secret_hash TEXT,
  redirect_uri TEXT,
  allowed_scopes TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE api_tokens (
  id {pk},
  hashed TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
  service_id INTEGER REFERENCES services(id) ON DELETE CASCADE,
  spawner_id INTEGER REFERENCES spawners(id) ON DELETE CASCADE,
  client_id TEXT NOT NULL DEFAULT 'jupyterhub',
  session_id TEXT,
  note TEXT,
  scopes TEXT NOT NULL DEFAULT '["inherit"]',
  created TEXT NOT NULL,
  expires_at TEXT,
  last_activity TEXT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);
CREATE TABLE hub_secrets (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);`,
  },
  {
    version: 2,
    description: 'index of running servers, for ?state= filters and the route check',
    sql: `
CREATE INDEX spawners_running ON spawners(user_id) WHERE url IS NOT NULL;
CREATE INDEX spawners_pending ON spawners(pending) WHERE pending IS NOT NULL;`,
  },
  {
    version: 3,
    description: 'OAuth authorization codes, and the server each OAuth client belongs to',
    sql: `
ALTER TABLE oauth_clients ADD COLUMN spawner_id INTEGER REFERENCES spawners(id) ON DELETE CASCADE;
CREATE TABLE oauth_codes (
  id {pk},
  code_hash TEXT NOT NULL UNIQUE,
  client_id TEXT NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  redirect_uri TEXT NOT NULL,
  scopes TEXT NOT NULL,
  expires_at TEXT NOT NULL
);`,
  },
  {
    version: 4,
    description:
      'the hub replica that holds a server’s pending action, so the leader can finish it if that replica dies',
    sql: `
ALTER TABLE spawners ADD COLUMN pending_owner TEXT;`,
  },
  {
    version: 5,
    description: 'failed sign-ins per client, so every hub replica shares the login throttle',
    sql: `
CREATE TABLE login_failures (
  client TEXT PRIMARY KEY,
  count INTEGER NOT NULL,
  since TEXT NOT NULL
);
CREATE INDEX login_failures_since ON login_failures(since);`,
  },
  {
    version: 6,
    description:
      'the leader’s lease (holder, term, expiry in the database’s clock), so a leader whose PostgreSQL session hangs is replaced',
    sql: `
CREATE TABLE leadership_lease (
  id INTEGER PRIMARY KEY,
  holder BIGINT,
  term BIGINT NOT NULL DEFAULT 0,
  expires TIMESTAMP WITH TIME ZONE
);
INSERT INTO leadership_lease (id, term) VALUES (1, 0);`,
  },
];

export const latestVersion = migrations.at(-1)!.version;

function render(db: Database, sql: string): string {
  return sql.replaceAll(
    '{pk}',
    db.dialect === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'SERIAL PRIMARY KEY',
  );
}

export async function currentVersion(db: Database): Promise<number> {
  await db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied TEXT NOT NULL)',
  );
  const row = await db.get<{ version: number | null }>(
    'SELECT MAX(version) AS version FROM schema_migrations',
  );
  return row?.version ?? 0;
}

/** Applies every migration newer than the database's version; returns the versions applied. */
export async function migrate(db: Database, upTo = latestVersion): Promise<number[]> {
  return db.withMigrationLock(async () => {
    const from = await currentVersion(db);
    const applied: number[] = [];
    for (const migration of migrations) {
      if (migration.version <= from || migration.version > upTo) continue;
      await db.transaction(async (tx) => {
        for (const statement of render(db, migration.sql).split(';')) {
          if (statement.trim()) await tx.run(statement);
        }
        await tx.run('INSERT INTO schema_migrations (version, applied) VALUES (?, ?)', [
          migration.version,
          new Date().toISOString(),
        ]);
      });
      applied.push(migration.version);
    }
    return applied;
  });
}
