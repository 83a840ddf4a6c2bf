// Routes shared by several proxy replicas through Redis. Every replica keeps the whole table in
// its local trie (lookups never touch the network) and tails a Redis Stream of changes; each
// change carries a global version, so a replica that missed some (reconnect, trimmed stream,
// restart) notices the gap and reloads a consistent snapshot instead of serving a stale table.
//
// Keys (prefix `seahorse:proxy` by default):
//   <prefix>:routes    hash  path → JSON route data (target and the writer's keys)
//   <prefix>:activity  hash  path → last activity, ms since the epoch (only ever raised)
//   <prefix>:version   int   incremented by every route change
//   <prefix>:changes   stream of {v, op, path, data, at}, trimmed to about --redis-changes-max

import type { Logger } from '@seahorse/runtime';
import { Redis, type RedisOptions } from 'ioredis';
import { StoreUnavailableError } from './errors.ts';
import { redact, redisOptions } from './redis-url.ts';
import { parseTarget, type RouteData, type RouteTable } from './routes.ts';
import type { RouteStore } from './store.ts';

/** The hash configurable-http-proxy-redis-backend 0.1.x keeps routes in, read once to migrate. */
export const legacyRoutesKey = 'configurable-proxy-redis-storage';

export interface RedisStoreOptions {
  /** `redis://`, `rediss://` or `sentinel://[:password@]host:port[,host:port]/[service_name:]master`. */
  url: string;
  keyPrefix: string;
  /** Approximate number of changes kept in the stream for replicas catching up. */
  changesMax: number;
  /** Replicas that must confirm a write before it is acknowledged (Redis WAIT); 0 for none. */
  waitReplicas: number;
  /** How long a command may take before the API answers 503. */
  commandTimeoutMs: number;
}

const setScript = `
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local v = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'v', v, 'op', 'set', 'path', ARGV[1], 'data', ARGV[2], 'at', ARGV[3])
return {v, id}`;

const deleteScript = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return {0, ''} end
redis.call('HDEL', KEYS[2], ARGV[1])
local v = redis.call('INCR', KEYS[3])
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 'v', v, 'op', 'delete', 'path', ARGV[1])
return {v, id}`;

// Activity only moves forward: replicas flush what they saw, the newest stamp wins.
const activityScript = `
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    local current = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
    if tonumber(ARGV[i + 1]) > current then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
  end
end
return 1`;

// Imports the legacy backend's hash once, when this store has no routes yet.
const migrateScript = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[5]) == 0 then return 0 end
local legacy = redis.call('HGETALL', KEYS[5])
for i = 1, #legacy, 2 do
  redis.call('HSET', KEYS[1], legacy[i], legacy[i + 1])
end
redis.call('INCR', KEYS[3])
return #legacy / 2`;

type StreamEntry = [id: string, fields: string[]];

export class RedisRouteStore implements RouteStore {
  readonly shared = true;
  readonly #options: RedisStoreOptions;
  readonly #log: Logger;
  readonly #keys: { routes: string; activity: string; version: string; changes: string };
  readonly #writer: Redis;
  readonly #reader: Redis;
  #table: RouteTable | undefined;
  /** Last global version applied to the local table, and the stream position after it. */
  #version = 0;
  #streamId = '0-0';
  /** Own writes applied before the stream delivers them: path → version. */
  readonly #ahead = new Map<string, number>();
  #closed = false;
  #status = 'connecting';
  #synced: Promise<void>;
  #resolveSynced!: () => void;
  #loop: Promise<void> | undefined;

  constructor(options: RedisStoreOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
    const prefix = options.keyPrefix;
    this.#keys = {
      routes: `${prefix}:routes`,
      activity: `${prefix}:activity`,
      version: `${prefix}:version`,
      changes: `${prefix}:changes`,
    };
    const common: RedisOptions = {
      ...redisOptions(options.url),
      lazyConnect: true,
      // Fail fast while disconnected: the API answers 503 instead of queueing writes.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    };
    this.#writer = new Redis({
      ...common,
      connectionName: 'seahorse-proxy',
      commandTimeout: options.commandTimeoutMs,
    });
    // Blocking reads get their own connection and no command timeout.
    this.#reader = new Redis({ ...common, connectionName: 'seahorse-proxy-changes' });
    for (const [name, client] of [
      ['writer', this.#writer],
      ['reader', this.#reader],
    ] as const) {
      client.on('error', (error: Error) => {
        this.#status = `redis unreachable at ${redact(options.url)}: ${error.message}`;
      });
      client.on('ready', () => this.#log.info({ connection: name }, 'redis connected'));
      client.on('end', () => {
        if (!this.#closed) this.#log.warn({ connection: name }, 'redis connection ended');
      });
    }
    this.#synced = new Promise((resolve) => {
      this.#resolveSynced = resolve;
    });
  }

  /** Why the store is not in step with Redis, or `in sync`. */
  get status(): string {
    return this.#status;
  }

  ready(): Promise<void> {
    return this.#synced;
  }

  async start(table: RouteTable): Promise<void> {
    this.#table = table;
    // Connections retry on their own with backoff; the proxy listens (unready) meanwhile.
    this.#writer.connect().catch(() => {});
    this.#reader.connect().catch(() => {});
    this.#loop = this.#follow();
  }

  async set(path: string, data: RouteData): Promise<void> {
    const now = Date.now();
    const [version] = (await this.#command(() =>
      this.#writer.eval(
        setScript,
        4,
        this.#keys.routes,
        this.#keys.activity,
        this.#keys.version,
        this.#keys.changes,
        path,
        JSON.stringify(data),
        String(now),
        String(this.#options.changesMax),
      ),
    )) as [number, string];
    await this.#waitForReplicas();
    this.#applyOwn(version, { type: 'set', path, data, lastActivity: now });
  }

  async delete(path: string): Promise<boolean> {
    const [version] = (await this.#command(() =>
      this.#writer.eval(
        deleteScript,
        4,
        this.#keys.routes,
        this.#keys.activity,
        this.#keys.version,
        this.#keys.changes,
        path,
        String(this.#options.changesMax),
      ),
    )) as [number, string];
    if (version === 0) return false;
    await this.#waitForReplicas();
    this.#applyOwn(version, { type: 'delete', path });
    return true;
  }

  async flushActivity(activity: ReadonlyMap<string, number>): Promise<void> {
    const args: string[] = [];
    for (const [path, at] of activity) args.push(path, String(at));
    for (let i = 0; i < args.length; i += 1000) {
      await this.#command(() =>
        this.#writer.eval(
          activityScript,
          2,
          this.#keys.routes,
          this.#keys.activity,
          ...args.slice(i, i + 1000),
        ),
      );
    }
  }

  /** Raises local activity to what the whole fleet has flushed. */
  async pullActivity(): Promise<void> {
    const all = (await this.#command(() => this.#writer.hgetall(this.#keys.activity))) as Record<
      string,
      string
    >;
    for (const [path, at] of Object.entries(all)) {
      const route = this.#table!.get(path);
      if (route && Number(at) > route.lastActivity) route.lastActivity = Number(at);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#reader.disconnect();
    await this.#loop;
    await this.#writer.quit().catch(() => this.#writer.disconnect());
  }

  async #command<T>(run: () => Promise<T>): Promise<T> {
    if (this.#writer.status !== 'ready') {
      throw new StoreUnavailableError(
        `The route store is unavailable (${this.#status}); nothing was changed. Retry when Redis is reachable.`,
      );
    }
    try {
      return await run();
    } catch (error) {
      throw new StoreUnavailableError(
        `Redis did not complete the request (${(error as Error).message}); retry it (writes are idempotent).`,
      );
    }
  }

  async #waitForReplicas(): Promise<void> {
    if (this.#options.waitReplicas <= 0) return;
    const acknowledged = (await this.#command(() =>
      this.#writer.wait(this.#options.waitReplicas, this.#options.commandTimeoutMs),
    )) as number;
    if (acknowledged < this.#options.waitReplicas) {
      throw new StoreUnavailableError(
        `Only ${acknowledged} of ${this.#options.waitReplicas} Redis replicas confirmed the write in time; it is on the primary, retry to confirm.`,
      );
    }
  }

  #applyOwn(version: number, change: Parameters<RouteTable['apply']>[0]): void {
    if (version > this.#version) this.#ahead.set(change.path, version);
    this.#table!.apply(change);
  }

  /** Loads the snapshot, then applies the change stream until closed; resyncs on any gap. */
  async #follow(): Promise<void> {
    let needSnapshot = true;
    while (!this.#closed) {
      try {
        if (needSnapshot) {
          await this.#snapshot();
          needSnapshot = false;
        }
        const reply = (await this.#reader.xread(
          'COUNT',
          1000,
          'BLOCK',
          2000,
          'STREAMS',
          this.#keys.changes,
          this.#streamId,
        )) as Array<[string, StreamEntry[]]> | null;
        if (!reply) {
          // Quiet stream: make sure it is quiet because nothing changed, not because we fell behind.
          const remote = Number((await this.#reader.get(this.#keys.version)) ?? 0);
          if (remote !== this.#version) needSnapshot = true;
          continue;
        }
        for (const [id, fields] of reply[0]![1]) {
          if (!this.#applyEntry(id, fields)) {
            needSnapshot = true;
            break;
          }
        }
      } catch (error) {
        if (this.#closed) break;
        this.#status = `redis unreachable at ${redact(this.#options.url)}: ${(error as Error).message}`;
        needSnapshot = true;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  /** Applies one stream entry; false when a version is missing, so a snapshot is needed. */
  #applyEntry(id: string, fields: string[]): boolean {
    const entry: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) entry[fields[i]!] = fields[i + 1]!;
    const version = Number(entry.v);
    if (version <= this.#version) {
      this.#streamId = id;
      return true;
    }
    if (version !== this.#version + 1) {
      this.#log.warn(
        { have: this.#version, next: version },
        'missed route changes, reloading the table from redis',
      );
      return false;
    }
    const path = entry.path!;
    const ahead = this.#ahead.get(path);
    if (ahead !== undefined && ahead >= version) {
      // Our own write, already applied; or an older change to a path we have since rewritten.
      if (ahead === version) this.#ahead.delete(path);
    } else if (entry.op === 'delete') {
      this.#table!.apply({ type: 'delete', path });
    } else {
      this.#table!.apply({
        type: 'set',
        path,
        data: JSON.parse(entry.data!) as RouteData,
        lastActivity: Number(entry.at),
      });
    }
    this.#version = version;
    this.#streamId = id;
    return true;
  }

  async #snapshot(): Promise<void> {
    const migrated = (await this.#reader.eval(
      migrateScript,
      5,
      this.#keys.routes,
      this.#keys.activity,
      this.#keys.version,
      this.#keys.changes,
      legacyRoutesKey,
    )) as number;
    if (migrated > 0)
      this.#log.info(
        { routes: migrated, from: legacyRoutesKey },
        'imported routes of the legacy redis backend',
      );
    const results = await this.#reader
      .multi()
      .get(this.#keys.version)
      .hgetall(this.#keys.routes)
      .hgetall(this.#keys.activity)
      .xrevrange(this.#keys.changes, '+', '-', 'COUNT', 1)
      .exec();
    if (!results) throw new Error('snapshot transaction was aborted');
    for (const [error] of results) if (error) throw error;
    const version = Number(results[0]![1] ?? 0);
    const routes = results[1]![1] as Record<string, string>;
    const activity = results[2]![1] as Record<string, string>;
    const last = results[3]![1] as StreamEntry[];
    const loaded: Array<{ path: string; data: RouteData; lastActivity?: number }> = [];
    for (const [path, json] of Object.entries(routes)) {
      try {
        const { last_activity: legacyActivity, ...data } = JSON.parse(json) as RouteData;
        parseTarget(data.target);
        const at = Number(activity[path]) || Date.parse(String(legacyActivity)) || undefined;
        loaded.push({ path, data: data as RouteData, lastActivity: at });
      } catch (error) {
        this.#log.error({ route: path, err: (error as Error).message }, 'skipping unreadable route in redis');
      }
    }
    this.#table!.replace(loaded);
    this.#version = version;
    this.#streamId = last[0]?.[0] ?? '0-0';
    this.#ahead.clear();
    this.#status = 'in sync';
    this.#log.info({ routes: loaded.length, version }, 'route table loaded from redis');
    this.#resolveSynced();
  }
}
