// Starting, stopping and polling servers through a spawner, with every fact about a server in
// the database (URL, spawner state, pending action, progress, failure) and the proxy's route
// table kept to match. Progress events also go to in-process listeners for the event stream.
import { EventEmitter } from 'node:events';
import type { Logger } from '@seahorse/runtime';
import { hashToken, newToken } from './auth/tokens.ts';
import type { HubConfig } from './config.ts';
import type { Database } from './db/database.ts';
import type { SpawnerRow, UserRow } from './db/rows.ts';
import * as spawners from './db/spawners.ts';
import * as tokens from './db/tokens.ts';
import { groupsOfUser } from './db/users.ts';
import { SpawnError } from './errors.ts';
import type { LeaderView } from './leader.ts';
import type { HubMetrics } from './metrics.ts';
import type { ProxyApi } from './proxy-api.ts';
import type { JsonObject, ProgressEvent, ServerSpec, Spawner, SpawnerContext } from './spawners/spawner.ts';
import { quoteAll, urlEscapePath } from './url-names.ts';

/**
 * Builds a spawner from its context; the configured spawner class with its traits bound. Its
 * `background` work (the Kubernetes pod watch) is started once the hub runs and stopped on
 * shutdown; with several replicas, only on the leader.
 */
export type BoundSpawnerFactory = ((context: SpawnerContext) => Spawner) & {
  background?: { start(): void; stop(): Promise<void> };
  /** Why the spawner refuses these user options (an image outside allowed_images): the API's 400. */
  refusesUserOptions?(userOptions: JsonObject): string | undefined;
};

export interface SpawnEvent extends ProgressEvent {
  ready?: boolean;
  failed?: boolean;
  url?: string;
  html_message?: string;
}

/** '/user/<name>/' or '/user/<name>/<server>/' under the base URL, escaped as JupyterHub does. */
export function serverPrefix(baseUrl: string, user: string, server: string): string {
  const path = `${baseUrl}user/${urlEscapePath(user)}/`;
  return server ? `${path}${urlEscapePath(server)}/` : path;
}

export function logName(user: string, server: string): string {
  return server ? `${user}:${server}` : user;
}

interface Running {
  spawner: Spawner;
  events: SpawnEvent[];
  done: Promise<void>;
  /** The progress writes, one after another: on a pool, an older one could land last. */
  saving: Promise<void>;
}

export class SpawnManager {
  readonly #db: Database;
  readonly #config: HubConfig;
  readonly #log: Logger;
  readonly #metrics: HubMetrics;
  readonly #proxy: ProxyApi;
  readonly #factory: BoundSpawnerFactory;
  readonly #running = new Map<number, Running>();
  /** Stops (and abandoned spawns) in progress in this process. */
  readonly #stopping = new Set<number>();
  readonly #replica: LeaderView;
  readonly events = new EventEmitter();

  constructor(
    db: Database,
    config: HubConfig,
    log: Logger,
    metrics: HubMetrics,
    proxy: ProxyApi,
    factory: BoundSpawnerFactory,
    replica: LeaderView,
  ) {
    this.#db = db;
    this.#config = config;
    this.#log = log;
    this.#metrics = metrics;
    this.#proxy = proxy;
    this.#factory = factory;
    this.#replica = replica;
    this.events.setMaxListeners(0);
  }

  /** Why the configured spawner refuses these user options, checked before a spawn is claimed. */
  refusesUserOptions(userOptions: JsonObject): string | undefined {
    return this.#factory.refusesUserOptions?.(userOptions);
  }

  /** Progress events of a spawn in this process so far (the database has them too). */
  eventsOf(spawnerId: number): SpawnEvent[] | undefined {
    return this.#running.get(spawnerId)?.events;
  }

  /** The completion of a spawn running in this process. */
  completion(spawnerId: number): Promise<void> | undefined {
    return this.#running.get(spawnerId)?.done;
  }

  async #spec(user: UserRow, row: SpawnerRow, apiToken: string): Promise<ServerSpec> {
    const prefix = serverPrefix(this.#config.baseUrl, user.name, row.name);
    const hubApi = `${this.#config.hubConnectUrl}${this.#config.baseUrl}hub/api`;
    // JupyterHub's client id: quote() of the names, '@' escaped too (it names cookies).
    const client = row.name
      ? `jupyterhub-user-${quoteAll(user.name)}-${quoteAll(row.name)}`
      : `jupyterhub-user-${quoteAll(user.name)}`;
    const access = `access:servers!server=${user.name}/${row.name}`;
    return {
      user: { name: user.name, admin: user.admin === 1, groups: await groupsOfUser(this.#db, user.id) },
      serverName: row.name,
      apiToken,
      oauthClientId: client,
      hubApiUrl: hubApi,
      baseUrl: this.#config.baseUrl,
      servicePrefix: prefix,
      oauthCallbackUrl: `${prefix}oauth_callback`,
      oauthScopes: [access],
      oauthAccessScopes: [access, `access:servers!user=${user.name}`],
      activityUrl: `${hubApi}/users/${urlEscapePath(user.name)}/activity`,
      userOptions: JSON.parse(row.user_options) as JsonObject,
      adminAccess: this.#config.adminAccess,
    };
  }

  #context(
    spec: ServerSpec,
    row: SpawnerRow,
    state: JsonObject | null,
    events: SpawnEvent[],
    running?: Running,
  ): SpawnerContext {
    // The spawner adds the user and server name to its own lines.
    const log = this.#log;
    return {
      spec,
      state,
      log,
      leadership: this.#replica,
      progress: (event: ProgressEvent) => {
        const entry: SpawnEvent = { progress: event.progress, message: event.message };
        events.push(entry);
        this.events.emit(`progress:${row.id}`, entry);
        // With the spawner's state so far (a PID, a pod name): should this replica die before
        // the server is ready, the leader finds what was started and stops it.
        const progress = JSON.stringify(events);
        const save = running
          ? async () => {
              await spawners.saveSpawnProgress(
                this.#db,
                row.id,
                this.#replica.replicaId,
                progress,
                JSON.stringify(running.spawner === placeholder ? {} : safeState(running.spawner)),
              );
            }
          : () => spawners.saveProgress(this.#db, row.id, progress);
        const saved = (running?.saving ?? Promise.resolve()).then(save).catch((error: unknown) => {
          log.warn({ err: error }, 'saving spawn progress failed');
        });
        if (running) running.saving = saved;
      },
      persist: async () => {
        if (!running) return;
        const save = running.saving.then(() =>
          spawners.saveSpawnProgress(
            this.#db,
            row.id,
            this.#replica.replicaId,
            JSON.stringify(events),
            JSON.stringify(running.spawner === placeholder ? {} : running.spawner.state()),
          ),
        );
        running.saving = save.then(
          () => undefined,
          () => undefined,
        );
        if (!(await save)) {
          throw new SpawnError('the spawn was taken over by the leader; nothing was started');
        }
      },
    };
  }

  /**
   * Starts a server whose row was just marked pending; resolves when it is ready (or failed).
   * The caller decides how long to wait before answering 202.
   */
  start(user: UserRow, row: SpawnerRow): Promise<void> {
    const events: SpawnEvent[] = [];
    const began = performance.now();
    let spawner: Spawner | undefined;
    const name = logName(user.name, row.name);
    const entry: Running = {
      spawner: placeholder,
      events,
      done: Promise.resolve(),
      saving: Promise.resolve(),
    };
    this.#running.set(row.id, entry);
    const done = (async () => {
      const token = newToken();
      try {
        const spec = await this.#spec(user, row, token);
        await tokens.deleteSpawnerTokens(this.#db, row.id);
        await tokens.insertToken(this.#db, {
          hashed: hashToken(token),
          prefix: token.slice(0, 4),
          userId: user.id,
          spawnerId: row.id,
          note: `Server at ${spec.servicePrefix}`,
          scopes: [
            `access:servers!server=${user.name}/${row.name}`,
            `users:activity!user=${user.name}`,
            ...this.#config.spawner.serverTokenScopes,
          ],
        });
        await tokens.upsertOAuthClient(this.#db, {
          identifier: spec.oauthClientId,
          description: `Server at ${spec.servicePrefix}`,
          redirectUri: spec.oauthCallbackUrl,
          allowedScopes: spec.oauthScopes,
          // The server proves it is the client with its API token, as in JupyterHub.
          secretHash: hashToken(token),
          spawnerId: row.id,
        });
        const context = this.#context(spec, row, null, events, entry);
        const hook = this.#config.hooks.preSpawnHook;
        if (hook)
          await hook({
            user: user.name,
            serverName: row.name,
            environment: this.#config.spawner.environment,
          });
        spawner = this.#factory(context);
        entry.spawner = spawner;
        const bound = spawner;
        // Read again when it runs out: a profile chosen during start() (a profile_list
        // function) may allow longer.
        const limit = () =>
          bound.spawnTimeoutMs ?? this.#config.spawner.startTimeoutMs + this.#config.spawner.httpTimeoutMs;
        const url = await withTimeout(
          spawner.start(),
          limit,
          () => `${name}'s server did not start within ${limit() / 1000} s`,
        );
        const owner = this.#replica.replicaId;
        await entry.saving;
        await spawners.saveSpawnProgress(
          this.#db,
          row.id,
          owner,
          JSON.stringify(events),
          JSON.stringify(spawner.state()),
        );
        await this.#addRoute(user.name, row.name, url);
        if (!(await spawners.markReady(this.#db, row.id, url, JSON.stringify(spawner.state()), owner))) {
          // The leader took this spawn over (it found this replica gone from the database) and
          // failed it: the server it knows nothing of must not keep running.
          throw new SpawnError(
            'the spawn was taken over by the leader while this hub replica was unreachable',
          );
        }
        this.#metrics.spawnDuration.labels('success').observe((performance.now() - began) / 1000);
        const ready = this.#readyEvent(user.name, row.name);
        events.push(ready);
        this.events.emit(`progress:${row.id}`, ready);
        this.#log.info(
          { user: user.name, server: row.name, url, ms: Math.round(performance.now() - began) },
          'server ready',
        );
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        this.#metrics.spawnDuration.labels('failure').observe((performance.now() - began) / 1000);
        this.#log.error({ user: user.name, server: row.name, err: error }, 'spawn failed');
        const state = spawner ? safeState(spawner) : {};
        if (spawner) await spawner.stop(true).catch(() => undefined);
        await tokens.deleteSpawnerTokens(this.#db, row.id).catch(() => undefined);
        await spawners
          .markFailed(this.#db, row.id, message, JSON.stringify(state), this.#replica.replicaId)
          .catch(() => undefined);
        const failed: SpawnEvent = { progress: 100, failed: true, message: `Spawn failed: ${message}` };
        events.push(failed);
        this.events.emit(`progress:${row.id}`, failed);
        throw error instanceof SpawnError ? error : new SpawnError(message, { cause: error });
      } finally {
        this.#running.delete(row.id);
      }
    })();
    entry.done = done;
    done.catch(() => undefined);
    return done;
  }

  #readyEvent(user: string, server: string): SpawnEvent {
    const url = serverPrefix(this.#config.baseUrl, user, server);
    return {
      progress: 100,
      ready: true,
      message: `Server ready at ${url}`,
      html_message: `Server ready at <a href="${url}">${url}</a>`,
      url,
    };
  }

  readyEvent(user: string, server: string): SpawnEvent {
    return this.#readyEvent(user, server);
  }

  async #addRoute(user: string, server: string, url: string): Promise<void> {
    const began = performance.now();
    try {
      await this.#proxy.addRoute(serverPrefix(this.#config.baseUrl, user, server), url, {
        user,
        server_name: server,
        jupyterhub: true,
      });
      this.#metrics.proxyAddDuration.labels('success').observe((performance.now() - began) / 1000);
    } catch (error) {
      this.#metrics.proxyAddDuration.labels('failure').observe((performance.now() - began) / 1000);
      throw error;
    }
  }

  async #deleteRoute(user: string, server: string): Promise<void> {
    const began = performance.now();
    try {
      await this.#proxy.deleteRoute(serverPrefix(this.#config.baseUrl, user, server));
      this.#metrics.proxyDeleteDuration.labels('success').observe((performance.now() - began) / 1000);
    } catch (error) {
      this.#metrics.proxyDeleteDuration.labels('failure').observe((performance.now() - began) / 1000);
      this.#log.warn({ user, server, err: error }, 'deleting the route failed; the route check retries');
    }
  }

  /** A spawner for a row started earlier (maybe by another hub process), from its saved state. */
  async #attach(user: UserRow, row: SpawnerRow): Promise<Spawner> {
    const running = this.#running.get(row.id);
    if (running && running.spawner !== placeholder) return running.spawner;
    const spec = await this.#spec(user, row, '');
    return this.#factory(this.#context(spec, row, JSON.parse(row.state) as JsonObject, []));
  }

  /** null while running, else an exit status. */
  async poll(user: UserRow, row: SpawnerRow): Promise<number | null> {
    const began = performance.now();
    const status = await (await this.#attach(user, row)).poll();
    this.#metrics.pollDuration
      .labels(status === null ? 'running' : 'stopped')
      .observe((performance.now() - began) / 1000);
    return status;
  }

  /** This replica's id: the owner of the pending actions it claims (spawnerDb.mark*Pending). */
  get owner(): string {
    return this.#replica.replicaId;
  }

  /** Stops a server whose row was just marked stop-pending (by this replica). */
  async stop(user: UserRow, row: SpawnerRow, now = false): Promise<void> {
    const began = performance.now();
    this.#stopping.add(row.id);
    try {
      let kept: JsonObject = {};
      try {
        await this.#deleteRoute(user.name, row.name);
        const spawner = await this.#attach(user, row);
        await spawner.stop(now);
        kept = spawner.stoppedState?.() ?? {};
        this.#metrics.stopDuration.labels('success').observe((performance.now() - began) / 1000);
      } catch (error) {
        this.#metrics.stopDuration.labels('failure').observe((performance.now() - began) / 1000);
        this.#log.error({ user: user.name, server: row.name, err: error }, 'stopping the server failed');
      }
      await this.#recorded(user, row, async () => {
        await tokens.deleteSpawnerTokens(this.#db, row.id);
        await spawners.markStopped(this.#db, row.id, this.#replica.replicaId, JSON.stringify(kept));
      });
      this.#log.info({ user: user.name, server: row.name }, 'server stopped');
    } finally {
      this.#stopping.delete(row.id);
    }
  }

  /** Writes the end of a pending action; when the database fails, says the sweep finishes it. */
  async #recorded(user: UserRow, row: SpawnerRow, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      this.#log.warn(
        { user: user.name, server: row.name, pending: row.pending, err: error },
        'recording the end of a pending action failed; it is finished once the database answers',
      );
      throw error;
    }
  }

  /**
   * Whether a pending action this replica claimed is stuck: nothing in this process runs it (the
   * database failed while it was being recorded, or the claim's answer was lost), and it was
   * claimed over `graceMs` ago (a claim is followed by its work within a few milliseconds).
   */
  isStuck(row: SpawnerRow, now = Date.now(), graceMs = 5000): boolean {
    if (row.pending === null || row.pending_owner !== this.#replica.replicaId) return false;
    if (this.#running.has(row.id) || this.#stopping.has(row.id)) return false;
    const since = row.pending_since ? Date.parse(row.pending_since) : 0;
    return now - since >= graceMs;
  }

  /**
   * Finishes a stuck pending action of this replica (isStuck): a spawn is stopped and failed (what
   * it had started found from its saved state), a stop is finished. Returns the row as it is now.
   */
  async recover(user: UserRow, row: SpawnerRow): Promise<SpawnerRow | undefined> {
    if (!this.isStuck(row)) return row;
    const fields = { user: user.name, server: row.name, pending: row.pending };
    this.#log.warn(fields, 'finishing a pending action the database failure interrupted');
    if (row.pending === 'spawn')
      await this.abandon(user, row, 'the hub’s database failed while the server was starting');
    else await this.stop(user, row, true);
    return spawners.findSpawnerById(this.#db, row.id);
  }

  /**
   * A spawn whose hub process died, taken over by this one: stops what it had started (from the
   * state saved with its progress) and fails it in one change, so no reader sees it stopped
   * without its failure.
   */
  async abandon(user: UserRow, row: SpawnerRow, failure: string): Promise<void> {
    this.#stopping.add(row.id);
    try {
      try {
        await this.#deleteRoute(user.name, row.name);
        await (await this.#attach(user, row)).stop(true);
      } catch (error) {
        this.#log.error({ user: user.name, server: row.name, err: error }, 'stopping the server failed');
      }
      await this.#recorded(user, row, async () => {
        await tokens.deleteSpawnerTokens(this.#db, row.id);
        await spawners.markFailed(this.#db, row.id, failure, '{}', this.#replica.replicaId);
      });
    } finally {
      this.#stopping.delete(row.id);
    }
  }

  /** A server found dead by a poll: clear it as JupyterHub's user_stopped does. */
  async stopped(user: UserRow, row: SpawnerRow): Promise<void> {
    // A spawn or stop claimed since the poll is left to whoever claimed it.
    const kept = (await this.#attach(user, row).catch(() => undefined))?.stoppedState?.() ?? {};
    if (!(await spawners.markStopped(this.#db, row.id, null, JSON.stringify(kept)))) return;
    await this.#deleteRoute(user.name, row.name);
    await tokens.deleteSpawnerTokens(this.#db, row.id);
    this.#log.info({ user: user.name, server: row.name }, 'server found stopped');
  }

  /**
   * JupyterHub's delete_forever, for a stopped server whose row is about to be deleted (the
   * user's, or a named server removed): what outlived the stop goes (KubeSpawner's PVC). Errors
   * propagate: the row must stay while its storage does.
   */
  async deleteForever(user: UserRow, row: SpawnerRow): Promise<boolean> {
    // Claimed for as long as the storage is deleted, and kept until the caller deletes the row:
    // a start through another request or replica would mount a PVC being deleted, then run
    // with its row gone. False (nothing deleted) when the server runs or is starting.
    if (!(await spawners.claimStoppedForDelete(this.#db, row.id, this.owner))) return false;
    this.#stopping.add(row.id);
    try {
      const spawner = await this.#attach(user, row);
      await spawner.deleteForever?.();
    } catch (error) {
      await spawners.releaseDeleteClaim(this.#db, row.id, this.owner).catch(() => undefined);
      throw error;
    } finally {
      this.#stopping.delete(row.id);
    }
    return true;
  }

  /** Spawns still running in this process, for shutdown. */
  get pendingCount(): number {
    return this.#running.size;
  }
}

const placeholder: Spawner = {
  start: async () => '',
  poll: async () => 0,
  stop: async () => undefined,
  state: () => ({}),
};

function safeState(spawner: Spawner): JsonObject {
  try {
    return spawner.state();
  } catch {
    return {};
  }
}

function withTimeout<T>(promise: Promise<T>, ms: () => number, message: () => string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const began = performance.now();
    let timer: NodeJS.Timeout;
    const expire = () => {
      const left = ms() - (performance.now() - began);
      if (left > 0) timer = setTimeout(expire, left);
      else reject(new SpawnError(message()));
    };
    timer = setTimeout(expire, ms());
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
