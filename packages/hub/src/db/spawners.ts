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

/** Claims a spawner for a spawn by `owner` (a replica id): only one process wins when two try at once. */
export async function markSpawnPending(
  db: Queryable,
  id: number,
  userOptions: string,
  owner: string,
): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending = 'spawn', pending_since = ?, pending_owner = ?, user_options = ?, progress = '[]', failure = NULL, ready = 0, url = NULL WHERE id = ? AND pending IS NULL",
    [nowIso(), owner, userOptions, id],
  );
  return changed === 1;
}

/** Claims a server for a stop by `owner`; false when another stop or a spawn holds it. */
export async function markStopPending(db: Queryable, id: number, owner: string): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending = 'stop', pending_since = ?, pending_owner = ? WHERE id = ? AND pending IS NULL",
    [nowIso(), owner, id],
  );
  return changed === 1;
}

/**
 * Claims a stopped server (no URL, nothing pending) as stop-pending by `owner` while what
 * outlives it is deleted (delete_forever) before its row: a spawn claimed through another request
 * or replica (markSpawnPending) is refused meanwhile. False when it runs or something is pending.
 */
export async function claimStoppedForDelete(db: Queryable, id: number, owner: string): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending = 'stop', pending_since = ?, pending_owner = ? WHERE id = ? AND pending IS NULL AND url IS NULL",
    [nowIso(), owner, id],
  );
  return changed === 1;
}

/** Gives back a claim of claimStoppedForDelete whose delete failed (the row stays, startable). */
export async function releaseDeleteClaim(db: Queryable, id: number, owner: string): Promise<void> {
  await db.run(
    "UPDATE spawners SET pending = NULL, pending_since = NULL, pending_owner = NULL WHERE id = ? AND pending = 'stop' AND pending_owner = ? AND url IS NULL",
    [id, owner],
  );
}

/**
 * Moves the pending action of a replica that is gone (`from`, '' for none recorded) to `to`;
 * false when the row changed meanwhile (finished, or claimed by another leader).
 */
export async function takeOverPending(
  db: Queryable,
  id: number,
  pending: string,
  from: string,
  to: string,
): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET pending_owner = ? WHERE id = ? AND pending = ? AND COALESCE(pending_owner, '') = ?",
    [to, id, pending, from],
  );
  return changed === 1;
}

export async function saveProgress(db: Queryable, id: number, progress: string): Promise<void> {
  await db.run('UPDATE spawners SET progress = ? WHERE id = ?', [progress, id]);
}

/**
 * Progress and the spawner's state so far, while `owner`'s spawn is pending: if that replica
 * dies mid-spawn, the leader finds (and stops) what it had started.
 */
export async function saveSpawnProgress(
  db: Queryable,
  id: number,
  owner: string,
  progress: string,
  state: string,
): Promise<boolean> {
  const changed = await db.run(
    "UPDATE spawners SET progress = ?, state = ? WHERE id = ? AND pending = 'spawn' AND pending_owner = ?",
    [progress, state, id, owner],
  );
  return changed === 1;
}

/** The spawn `owner` ran is ready; false when its claim was taken over meanwhile. */
export async function markReady(
  db: Queryable,
  id: number,
  url: string,
  state: string,
  owner: string,
): Promise<boolean> {
  const now = nowIso();
  const changed = await db.run(
    "UPDATE spawners SET url = ?, state = ?, ready = 1, pending = NULL, pending_since = NULL, pending_owner = NULL, started = ?, last_activity = ?, failure = NULL WHERE id = ? AND pending = 'spawn' AND pending_owner = ?",
    [url, state, now, now, id, owner],
  );
  return changed === 1;
}

/** The spawn `owner` ran failed; a row claimed by someone else since is left alone. */
export async function markFailed(
  db: Queryable,
  id: number,
  failure: string,
  state: string,
  owner: string,
): Promise<void> {
  await db.run(
    'UPDATE spawners SET url = NULL, ready = 0, pending = NULL, pending_since = NULL, pending_owner = NULL, failure = ?, state = ? WHERE id = ? AND (pending IS NULL OR pending_owner = ?)',
    [failure, state, id, owner],
  );
}

/**
 * The server is stopped. With `owner`, only when nothing is pending or `owner` holds the pending
 * action; with null, only when nothing is pending (a poll found it dead: a spawn claimed since
 * must not be wiped).
 */
/** `state` is what the spawner keeps once stopped (KubeSpawner's PVC name); '{}' by default. */
export async function markStopped(
  db: Queryable,
  id: number,
  owner: string | null,
  state = '{}',
): Promise<boolean> {
  const changed = await db.run(
    'UPDATE spawners SET url = NULL, ready = 0, pending = NULL, pending_since = NULL, pending_owner = NULL, started = NULL, state = ? WHERE id = ? AND (pending IS NULL OR pending_owner = ?)',
    [state, id, owner],
  );
  return changed === 1;
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

/** Servers with a pending action (spawn or stop), with their user's name: few, and indexed. */
export async function pendingSpawners(db: Queryable): Promise<ActiveSpawner[]> {
  return db.all<ActiveSpawner>(
    'SELECT s.*, u.name AS user_name, u.admin AS user_admin FROM spawners s JOIN users u ON u.id = s.user_id WHERE s.pending IS NOT NULL ORDER BY s.id',
  );
}
