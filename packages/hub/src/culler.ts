// The idle culler built into the hub: jupyterhub-idle-culler's pass (timeout, max_age,
// concurrency, named servers, cull_users) run in-process, so no Python service is needed.
// Activity comes from the proxy (read at the start of each pass) and from the servers' own
// reports (POST /users/<name>/activity, already in the database).
import { Counter } from '@seahorse/runtime/metrics';
import type { HubConfig } from './config.ts';
import type { SpawnerRow, UserRow } from './db/rows.ts';
import * as spawnerDb from './db/spawners.ts';
import { deleteUser, findUserById, touchUser } from './db/users.ts';
import type { Hub } from './hub.ts';
import { serverPrefix } from './spawns.ts';

export interface CullPass {
  servers: number;
  users: number;
}

export class IdleCuller {
  readonly #hub: Hub;
  readonly #options: HubConfig['culler'];
  readonly #culls: Counter<'kind' | 'reason'>;

  constructor(hub: Hub, options: HubConfig['culler'] = hub.config.culler) {
    this.#hub = hub;
    this.#options = options;
    const registry = hub.metrics.registry;
    const name = 'seahorse_hub_idle_culls_total';
    this.#culls =
      (registry.getSingleMetric(name) as Counter<'kind' | 'reason'> | undefined) ??
      new Counter({
        name,
        help: 'Servers stopped and users deleted by the idle culler, by kind (server, user) and reason (inactive, max_age)',
        labelNames: ['kind', 'reason'],
        registers: [registry],
      });
  }

  /**
   * One pass: activity from the proxy, then idle (or too old) servers, then idle users. The
   * server runs it on the leader only, with the term's signal: no new cull once the term ends.
   */
  async cull(now = Date.now(), signal?: AbortSignal): Promise<CullPass> {
    const { db, log } = this.#hub;
    const options = this.#options;
    try {
      await this.#activityFromProxy();
    } catch (error) {
      // The servers' own reports still count; the proxy's are read again next pass.
      log.warn({ err: error }, 'idle culler: reading activity from the proxy failed');
    }
    const candidates: Array<{
      row: spawnerDb.ActiveSpawner;
      reason: 'inactive' | 'max_age';
      idleS: number;
      ageS: number;
    }> = [];
    for (const row of await spawnerDb.activeSpawners(db)) {
      // Pending servers are starting or stopping: not ours to touch, as in jupyterhub-idle-culler.
      if (row.pending !== null || row.url === null || row.ready !== 1) continue;
      const started = row.started ? Date.parse(row.started) : now;
      const last = row.last_activity ? Math.max(Date.parse(row.last_activity), started) : started;
      const idleMs = now - last;
      const ageMs = now - started;
      let reason: 'inactive' | 'max_age' | undefined;
      if (options.timeoutMs > 0 && idleMs >= options.timeoutMs) reason = 'inactive';
      else if (options.maxAgeMs > 0 && ageMs >= options.maxAgeMs) reason = 'max_age';
      if (reason) candidates.push({ row, reason, idleS: idleMs / 1000, ageS: ageMs / 1000 });
    }
    let servers = 0;
    await eachLimited(candidates, options.concurrency, async ({ row, reason, idleS, ageS }) => {
      // A pass outlives the term that began it only until its next server.
      if (signal?.aborted) return;
      if (await this.#cullServer(row, reason, idleS, ageS)) servers++;
    });
    let users = 0;
    if (options.cullUsers && options.timeoutMs > 0) {
      const before = new Date(now - options.timeoutMs).toISOString();
      const idle = await db.all<UserRow>(
        `SELECT u.* FROM users u
         WHERE COALESCE(u.last_activity, u.created) < ?
           AND NOT EXISTS (SELECT 1 FROM spawners s WHERE s.user_id = u.id AND (s.url IS NOT NULL OR s.pending IS NOT NULL))
         ORDER BY u.id`,
        [before],
      );
      await eachLimited(idle, options.concurrency, async (user) => {
        if (signal?.aborted) return;
        const last = Date.parse(user.last_activity ?? user.created);
        // Checked again right before deleting: a server may have started since the query.
        const active = await db.get<{ id: number }>(
          'SELECT id FROM spawners WHERE user_id = ? AND (url IS NOT NULL OR pending IS NOT NULL)',
          [user.id],
        );
        if (active) return;
        // As the culler service's DELETE /users/<name>: storage that outlives a stop goes too.
        try {
          const rows = await db.all<SpawnerRow>('SELECT * FROM spawners WHERE user_id = ?', [user.id]);
          for (const row of rows) {
            // Started since the check above: the user stays, for a later round.
            if (!(await this.#hub.spawns.deleteForever(user, row))) return;
          }
        } catch (error) {
          log.warn(
            { user: user.name, err: error },
            'idle culler: deleting the user’s storage failed; next round',
          );
          return;
        }
        await deleteUser(db, user.id);
        users++;
        this.#culls.labels('user', 'inactive').inc();
        log.info({ user: user.name, idle_s: Math.round((now - last) / 1000) }, 'idle culler: user deleted');
      });
    }
    return { servers, users };
  }

  async #cullServer(
    row: spawnerDb.ActiveSpawner,
    reason: 'inactive' | 'max_age',
    idleS: number,
    ageS: number,
  ): Promise<boolean> {
    const { db, log, spawns } = this.#hub;
    // The same claim the API's stop takes: a server stopped (or started) meanwhile is left alone,
    // and two hub processes never cull the same server twice.
    if (!(await spawnerDb.markStopPending(db, row.id, spawns.owner))) return false;
    const user = (await findUserById(db, row.user_id)) as UserRow;
    log.info(
      { user: row.user_name, server: row.name, reason, idle_s: Math.round(idleS), age_s: Math.round(ageS) },
      'idle culler: stopping server',
    );
    await spawns.stop(user, row);
    this.#culls.labels('server', reason).inc();
    if (row.name && this.#options.removeNamedServers) {
      const stopped = await spawnerDb.findSpawnerById(db, row.id);
      // Started again since the stop: the server stays.
      if (stopped && !(await spawns.deleteForever(user, stopped))) return true;
      await spawnerDb.deleteSpawner(db, row.id);
      log.info({ user: row.user_name, server: row.name }, 'idle culler: named server removed');
    }
    return true;
  }

  /** The proxy's last_activity per route into servers and users, moving only forward. */
  async #activityFromProxy(): Promise<void> {
    const { db, proxy, config } = this.#hub;
    const routes = await proxy.getRoutes();
    const byPath = new Map(
      (await spawnerDb.activeSpawners(db)).map((s) => [serverPrefix(config.baseUrl, s.user_name, s.name), s]),
    );
    for (const [path, route] of Object.entries(routes)) {
      if (!route.last_activity || route.jupyterhub !== true) continue;
      const row = byPath.get(path.endsWith('/') ? path : `${path}/`);
      const ms = Date.parse(route.last_activity);
      if (!row || Number.isNaN(ms)) continue;
      const when = new Date(ms).toISOString();
      await touchUser(db, row.user_id, when);
      await spawnerDb.touchSpawner(db, row.id, when);
    }
  }
}

/** Runs `work` over `items` with at most `limit` at once; a failure of one does not stop the rest. */
async function eachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await work(item).catch((error: unknown) => errors.push(error));
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (errors.length) throw new AggregateError(errors, `idle culler: ${errors.length} cull(s) failed`);
}
