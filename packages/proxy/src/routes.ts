// Routes as JupyterHub sees them (a path prefix, a target URL and whatever keys the writer
// added) and the local routing table that every lookup reads.
import { SeahorseError } from '@seahorse/runtime';
import { PathTrie } from './trie.ts';

/** What a writer stores: `target` plus any extra keys, returned verbatim beside `last_activity`. */
export type RouteData = { target: string } & Record<string, unknown>;

/** A target URL parsed once when the route is written, so requests never parse URLs. */
export interface Target {
  readonly href: string;
  readonly secure: boolean;
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]` as a Host header names it (port omitted when default). */
  readonly host: string;
  /** `scheme://host[:port]`, what the HTTP client dispatches to. */
  readonly origin: string;
  /** Path of the target as written ('' for none or `/`), prepended to forwarded paths. */
  readonly pathname: string;
  /** Query of the target without `?` ('' for none), merged before the request's query. */
  readonly query: string;
  /** For `http+unix://` targets: the socket to connect to. */
  readonly socketPath: string | undefined;
}

export interface Route {
  /** Normalised prefix: leading slash, unescaped, no trailing slash except `/`. */
  readonly path: string;
  readonly data: RouteData;
  readonly target: Target;
  /** Milliseconds since the epoch of the last traffic seen through this route. */
  lastActivity: number;
}

export class RouteError extends SeahorseError {}

/** Parses and checks a target URL; throws RouteError with a message for the API client. */
export function parseTarget(value: unknown): Target {
  if (typeof value !== 'string' || value === '') {
    throw new RouteError('CHP_BAD_TARGET', "'target' must be a URL string such as http://10.0.0.5:8888");
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new RouteError('CHP_BAD_TARGET', `'target' is not a valid URL: ${JSON.stringify(value)}`);
  }
  const protocol = url.protocol;
  const unix = protocol === 'http+unix:' || protocol === 'unix+http:' || protocol === 'https+unix:';
  if (!(unix || ['http:', 'https:', 'ws:', 'wss:'].includes(protocol)) || url.host === '') {
    throw new RouteError(
      'CHP_BAD_TARGET',
      `'target' must be an http://, https:// or http+unix:// URL with a host, got ${JSON.stringify(value)}`,
    );
  }
  const secure = protocol === 'https:' || protocol === 'wss:' || protocol === 'https+unix:';
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  const pathname = url.pathname === '/' ? '' : url.pathname;
  // URL keeps brackets around IPv6 literals; sockets want the bare address.
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const socketPath = unix ? decodeURIComponent(url.host) : undefined;
  return {
    href: value,
    secure,
    hostname: unix ? 'localhost' : hostname,
    port,
    host: unix ? 'localhost' : url.host,
    origin: unix ? `${secure ? 'https' : 'http'}://localhost` : `${secure ? 'https' : 'http'}://${url.host}`,
    pathname,
    query: url.search.slice(1),
    socketPath,
  };
}

/**
 * The canonical key of a route path, as CHP stores it: percent-decoded UTF-8, one leading
 * slash, no trailing slash except for `/`. Throws RouteError on undecodable input.
 */
export function normalizePath(raw: string): string {
  let path: string;
  try {
    path = raw.includes('%') ? decodeURIComponent(raw) : raw;
  } catch {
    throw new RouteError('CHP_BAD_PATH', `route path has invalid percent-encoding: ${JSON.stringify(raw)}`);
  }
  if (path.charCodeAt(0) !== 47) path = `/${path}`;
  while (path.length > 1 && path.charCodeAt(path.length - 1) === 47) path = path.slice(0, -1);
  return path;
}

export type RouteChange =
  | { type: 'set'; path: string; data: RouteData; lastActivity?: number }
  | { type: 'delete'; path: string };

/** The local table: a trie for request lookups plus a map (in insertion order) for the API. */
export class RouteTable {
  readonly #trie = new PathTrie<Route>();
  readonly #byPath = new Map<string, Route>();
  readonly #listeners: Array<(change: RouteChange) => void> = [];
  readonly #replaceListeners: Array<() => void> = [];

  get size(): number {
    return this.#byPath.size;
  }

  /** The route whose prefix is the longest match for `path` (already decoded, no query). */
  lookup(path: string): Route | undefined {
    return this.#trie.lookup(path);
  }

  get(path: string): Route | undefined {
    return this.#byPath.get(path);
  }

  all(): IterableIterator<Route> {
    return this.#byPath.values();
  }

  /** Applies a change; `data.target` must already be valid (stores check before writing). */
  apply(change: RouteChange): void {
    if (change.type === 'delete') {
      this.#trie.delete(change.path);
      this.#byPath.delete(change.path);
    } else {
      const route: Route = {
        path: change.path,
        data: change.data,
        target: parseTarget(change.data.target),
        lastActivity: change.lastActivity ?? Date.now(),
      };
      // A re-written route moves to the end of the listing, as CHP's does.
      this.#byPath.delete(change.path);
      this.#byPath.set(change.path, route);
      this.#trie.set(change.path, route);
    }
    for (const listener of this.#listeners) listener(change);
  }

  /** Replaces the whole table, keeping the newer activity of routes present in both. */
  replace(routes: Iterable<{ path: string; data: RouteData; lastActivity?: number }>): void {
    const previous = new Map(this.#byPath);
    this.#trie.clear();
    this.#byPath.clear();
    for (const { path, data, lastActivity } of routes) {
      const route: Route = {
        path,
        data,
        target: parseTarget(data.target),
        lastActivity: Math.max(lastActivity ?? 0, previous.get(path)?.lastActivity ?? 0) || Date.now(),
      };
      this.#byPath.set(path, route);
      this.#trie.set(path, route);
    }
    for (const listener of this.#replaceListeners) listener();
  }

  /** Called after every applied change (workers mirror the table through this). */
  onChange(listener: (change: RouteChange) => void): void {
    this.#listeners.push(listener);
  }

  /** Called after the whole table was replaced (a store reloaded it). */
  onReplace(listener: () => void): void {
    this.#replaceListeners.push(listener);
  }
}
