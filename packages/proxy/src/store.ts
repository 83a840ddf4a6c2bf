// Where routes live. The proxy never asks a store on the request path: every process keeps its
// local RouteTable up to date from a route source, and the REST API writes through a writer.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Logger, StartupError } from '@seahorse/runtime';
import type { RedisStoreOptions } from './redis-store.ts';
import type { RouteData, RouteTable, Target } from './routes.ts';

/** Where routes live (`--storage-backend` and its settings), as `ProxyOptions.store`. */
export interface StoreOptions {
  backend:
    | { kind: 'memory' }
    | { kind: 'redis'; redis: RedisStoreOptions }
    /** A CHP storage module: a module name or a path, resolved from the working directory. */
    | { kind: 'module'; module: string };
  /** How often activity seen here is written to a store other processes read. */
  activityFlushMs: number;
}

/**
 * Opens the store `options` describe. A storage module is constructed with `proxyOptions`, as
 * CHP constructs it with its own options.
 */
export async function openRouteStore(
  options: StoreOptions,
  proxyOptions: object,
  log: Logger,
): Promise<RouteStore> {
  const { backend } = options;
  switch (backend.kind) {
    case 'memory':
      return new MemoryRouteStore();
    case 'redis': {
      // Loaded only when asked for: the Redis client costs memory a memory-store proxy never needs.
      const { RedisRouteStore } = await import('./redis-store.ts');
      return new RedisRouteStore(backend.redis, log);
    }
    case 'module':
      return loadStorageModule(backend.module, proxyOptions);
  }
}

/**
 * The read side every proxy process has: keeps the local table in step with where routes live
 * and passes on the activity seen here. A worker process has only this side.
 */
export interface RouteSource {
  /** True when other processes read this store, so local activity must be flushed to it. */
  readonly shared: boolean;
  /** `in sync`, or why the local table may not reflect the store (shown by readiness). */
  readonly status: string;
  /**
   * Starts filling `table` and applying changes made elsewhere until close(). May resolve
   * before the first load (a store that retries a connection); ready() says when it is done.
   */
  start(table: RouteTable): Promise<void>;
  /** Resolves once the table holds the store's routes. */
  ready(): Promise<void>;
  /** Records activity seen locally since the last flush (newest wins across writers). */
  flushActivity(activity: ReadonlyMap<string, number>): Promise<void>;
  /** Raises the local table's activity to what other processes have flushed. */
  pullActivity?(): Promise<void>;
  close(): Promise<void>;
}

/** The write side, which the REST API (and the default route) use. */
export interface RouteWriter {
  /**
   * Resolves once the write is durable in the store and applied to the local table. `target`
   * is `data.target` already parsed, so the local table need not parse it again.
   */
  set(path: string, data: RouteData, target?: Target): Promise<void>;
  /** Resolves false when there was no such route. */
  delete(path: string): Promise<boolean>;
}

/** A store that is read and written: memory, Redis and CHP storage modules. */
export interface RouteStore extends RouteSource, RouteWriter {}

/** The default: the local table is the store. */
export class MemoryRouteStore implements RouteStore {
  readonly shared = false;
  readonly status = 'in sync';
  #table: RouteTable | undefined;

  async start(table: RouteTable): Promise<void> {
    this.#table = table;
  }

  async ready(): Promise<void> {}

  async set(path: string, data: RouteData, target?: Target): Promise<void> {
    this.#table!.apply({ type: 'set', path, data }, target);
  }

  async delete(path: string): Promise<boolean> {
    if (!this.#table!.get(path)) return false;
    this.#table!.apply({ type: 'delete', path });
    return true;
  }

  async flushActivity(): Promise<void> {
    // Activity already lives on the routes of the local table.
  }

  async close(): Promise<void> {}
}

/** The storage interface CHP's `--storage-backend` modules implement (see CHP's lib/store.js). */
interface ChpStorage {
  getAll(): Promise<Record<string, Record<string, unknown>>>;
  add(path: string, data: Record<string, unknown>): Promise<void>;
  update(path: string, data: Record<string, unknown>): Promise<void>;
  remove(path: string): Promise<void>;
}

/**
 * Runs a CHP storage backend module: the table is loaded from it at start and re-read every
 * `resyncMs` (such modules cannot push changes), and API writes go to it before the table.
 */
export class ChpModuleRouteStore implements RouteStore {
  readonly shared = true;
  readonly status = 'in sync';
  readonly #backend: ChpStorage;
  readonly #resyncMs: number;
  #table: RouteTable | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(backend: ChpStorage, resyncMs = 5000) {
    this.#backend = backend;
    this.#resyncMs = resyncMs;
  }

  async start(table: RouteTable): Promise<void> {
    this.#table = table;
    await this.#resync();
    this.#timer = setInterval(() => {
      this.#resync().catch(() => {
        // keep serving the last table; the next interval tries again
      });
    }, this.#resyncMs);
    this.#timer.unref();
  }

  async ready(): Promise<void> {}

  async #resync(): Promise<void> {
    const all = await this.#backend.getAll();
    this.#table!.replace(
      Object.entries(all).map(([path, stored]) => {
        const { last_activity: activity, ...data } = stored;
        return { path, data: data as RouteData, lastActivity: toMillis(activity) };
      }),
    );
  }

  async set(path: string, data: RouteData, target?: Target): Promise<void> {
    await this.#backend.add(path, { ...data, last_activity: new Date() });
    this.#table!.apply({ type: 'set', path, data }, target);
  }

  async delete(path: string): Promise<boolean> {
    if (!this.#table!.get(path)) return false;
    await this.#backend.remove(path);
    this.#table!.apply({ type: 'delete', path });
    return true;
  }

  async flushActivity(activity: ReadonlyMap<string, number>): Promise<void> {
    for (const [path, at] of activity) await this.#backend.update(path, { last_activity: new Date(at) });
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
  }
}

function toMillis(value: unknown): number | undefined {
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string' || typeof value === 'number') {
    const at = new Date(value).getTime();
    return Number.isNaN(at) ? undefined : at;
  }
  return undefined;
}

/**
 * Loads a CHP-style storage class from a module name or path, as `--storage-backend` does in
 * CHP: the module's export (or its default export) is constructed with the proxy options.
 */
export async function loadStorageModule(spec: string, options: object): Promise<RouteStore> {
  const looksLikePath = spec.startsWith('.') || isAbsolute(spec);
  let url: string;
  try {
    if (looksLikePath && !existsSync(resolve(spec))) throw new Error('missing');
    url = looksLikePath
      ? pathToFileURL(resolve(spec)).href
      : pathToFileURL(createRequire(`${process.cwd()}/`).resolve(spec)).href;
  } catch {
    throw new StartupError(
      `--storage-backend: cannot find module '${spec}'; give 'memory', 'redis', or a path to a storage module`,
    );
  }
  let exported: unknown;
  try {
    const module = (await import(url)) as { default?: unknown };
    exported = module.default ?? module;
  } catch (error) {
    throw new StartupError(`--storage-backend: loading '${spec}' failed: ${(error as Error).message}`);
  }
  if (typeof exported !== 'function') {
    throw new StartupError(`--storage-backend: '${spec}' does not export a storage class`);
  }
  const backend = new (exported as new (options: object) => ChpStorage)(options);
  for (const method of ['getAll', 'add', 'update', 'remove'] as const) {
    if (typeof backend[method] !== 'function') {
      throw new StartupError(
        `--storage-backend: '${spec}' has no ${method}() method, which CHP backends implement`,
      );
    }
  }
  return new ChpModuleRouteStore(backend);
}
