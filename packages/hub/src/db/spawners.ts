// Servers (JupyterHub's Spawner rows): their URL, persisted spawner state, pending action,
// progress and failure — everything another hub process needs to serve or re-attach to them.
import type { Queryable } from './database.ts';
import { nowIso, type SpawnerRow } from './rows.ts';

export async function findSpawner(
  db: Queryable,
  userId: number,
  name: string,
): Promise<SpawnerRow | undefined> {
  return db.get<SpawnerRow>('SELECT * FROM spawners WHERE user_id = ? AND name = ?', [userId, name]);
}

export async function findSpawnerById(db: Queryable, id: number): Promise<SpawnerRow | undefined> {
  return db.get<SpawnerRow>('SELECT * FROM spawners WHERE id = ?', [id]);
}

export async function ensureSpawner(db: Queryable, userId: number, name: string): Promise<SpawnerRow> {
  await db.run('INSERT INTO spawners (user_id, name) VALUES (?, ?) ON CONFLICT (user_id, name) DO NOTHING', [
    userId,
    name,
  ]);
  return (await findSpawner(db, userId, name))!;
}

export async function countNamedSpawners(db: Queryable, userId: number): Promise<number> {
  return (
    (
      await db.get<{ n: number }>("SELECT COUNT(*) AS n FROM spawners WHERE user_id = ? AND name <> ''", [
        userId,
      ])
    )?.n ?? 0
  );
}

export async function countPendingSpawns(db: Queryable): Promise<number> {
  return (await db.get<{ n: number }>("SELECT COUNT(*) AS n FROM spawners WHERE pending = 'spawn'"))?.n ?? 0;
}

export async function countActive(db: Queryable): Promise<{ running: number; pending: number }> {
  const row = await db.get<{ running: number; pending: number }>(
    'SELECT COUNT(CASE WHEN ready = 1 THEN 1 END) AS running, COUNT(CASE WHEN pending IS NOT NULL THEN 1 END) AS pending FROM spawners WHERE url IS NOT NULL OR pending IS NOT NULL',
  );
  return { running: row?.running ?? 0, pending: row?.pending ?? 0 };
}

/** Claims a spawner for a spawn: only one process wins when two try at once. */
export async function markSpawnPending(db: Queryable, id: number, userOptions: string): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending = 'spawn', pending_since = ?, user_options = ?, progress = '[]', failure = NULL, ready = 0, url = NULL WHERE id = ? AND pending IS NULL",
    [nowIso(), userOptions, id],
  );
  return changed === 1;
}

export async function markStopPending(db: Queryable, id: number): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending = 'stop', pending_since = ? WHERE id = ? AND pending IS NULL",
    [nowIso(), id],
  );
  return changed === 1;
}

export async function saveProgress(db: Queryable, id: number, progress: string): Promise<void> {
  await db.run('UPDATE spawners SET progress = ? WHERE id = ?', [progress, id]);
}

export async function saveState(db: Queryable, id: number, state: string): Promise<void> {
  await db.run('UPDATE spawners SET state = ? WHERE id = ?', [state, id]);
}

export async function markReady(db: Queryable, id: number, url: string, state: string): Promise<void> {
  const now = nowIso();
  await db.run(
    'UPDATE spawners SET url = ?, state = ?, ready = 1, pending = NULL, pending_since = NULL, started = ?, last_activity = ?, failure = NULL WHERE id = ?',
    [url, state, now, now, id],
  );
}

export async function markFailed(db: Queryable, id: number, failure: string, state: string): Promise<void> {
  await db.run(
    'UPDATE spawners SET url = NULL, ready = 0, pending = NULL, pending_since = NULL, failure = ?, state = ? WHERE id = ?',
    [failure, state, id],
  );
}

export async function markStopped(db: Queryable, id: number): Promise<void> {
  await db.run(
    "UPDATE spawners SET url = NULL, ready = 0, pending = NULL, pending_since = NULL, started = NULL, state = '{}' WHERE id = ?",
    [id],
  );
}

export async function deleteSpawner(db: Queryable, id: number): Promise<void> {
  await db.run('DELETE FROM spawners WHERE id = ?', [id]);
}

export async function touchSpawner(db: Queryable, id: number, when: string): Promise<void> {
  await db.run(
    'UPDATE spawners SET last_activity = ? WHERE id = ? AND (last_activity IS NULL OR last_activity < ?)',
    [when, id, when],
  );
}

export interface ActiveSpawner extends SpawnerRow {
  user_name: string;
  user_admin: number;
}

/** Servers with a URL or a pending action, with their user's name: the route table's source. */
export async function activeSpawners(db: Queryable): Promise<ActiveSpawner[]> {
  return db.all<ActiveSpawner>(
    'SELECT s.*, u.name AS user_name, u.admin AS user_admin FROM spawners s JOIN users u ON u.id = s.user_id WHERE s.url IS NOT NULL OR s.pending IS NOT NULL ORDER BY s.id',
  );
}
