// Routes as JupyterHub sees them (a path prefix, a target URL and whatever keys the writer
// added) and the local routing table that every lookup reads.
import { RouteError } from './errors.ts';
import { PrefixMap } from './prefix-map.ts';

/** What a writer stores: `target` plus any extra keys, returned verbatim beside `last_activity`. */
export type RouteData = { target: string } & Record<string, unknown>;

/**
 * A target URL parsed once when the route is written, so requests never parse URLs. Only what
 * every request needs is stored (100k routes are 100k of these); the host parts that websocket
 * upgrades and --change-origin need are cut from `origin` when asked for.
 */
export class Target {
  readonly href: string;
  readonly secure: boolean;
  /** `scheme://host[:port]`, what the HTTP client dispatches to. */
  readonly origin: string;
  /** Path of the target as written ('' for none or `/`), prepended to forwarded paths. */
  readonly pathname: string;
  /** Query of the target without `?` ('' for none), merged before the request's query. */
  readonly query: string;
  /** For `http+unix://` targets: the socket to connect to. */
  readonly socketPath: string | undefined;

  constructor(
    href: string,
    secure: boolean,
    origin: string,
    pathname: string,
    query: string,
    socketPath?: string,
  ) {
    this.href = href;
    this.secure = secure;
    this.origin = origin;
    this.pathname = pathname;
    this.query = query;
    this.socketPath = socketPath;
  }

  /** `host[:port]` as a Host header names it (port omitted when default). */
  get host(): string {
    return this.origin.slice(this.secure ? 8 : 7);
  }

  /** The host to connect to: IPv6 literals without their brackets. */
  get hostname(): string {
    const host = this.host;
    if (host.charCodeAt(0) === 91) return host.slice(1, host.indexOf(']'));
    const colon = host.lastIndexOf(':');
    return colon === -1 ? host : host.slice(0, colon);
  }

  get port(): number {
    const host = this.host;
    const colon = host.lastIndexOf(':');
    return colon > host.lastIndexOf(']') ? Number(host.slice(colon + 1)) : this.secure ? 443 : 80;
  }
}

export interface Route {
  /** Normalised prefix: leading slash, unescaped, no trailing slash except `/`. */
  readonly path: string;
  readonly data: RouteData;
  readonly target: Target;
  /** Milliseconds since the epoch of the last traffic seen through this route. */
  lastActivity: number;
}

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
  const pathname = url.pathname === '/' ? '' : url.pathname;
  const scheme = secure ? 'https' : 'http';
  if (unix) {
    const socketPath = decodeURIComponent(url.host);
    return new Target(value, secure, `${scheme}://localhost`, pathname, url.search.slice(1), socketPath);
  }
  return new Target(value, secure, `${scheme}://${url.host}`, pathname, url.search.slice(1));
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

/** The local table: one prefix map serves request lookups and (in insertion order) the API. */
export class RouteTable {
  readonly #byPath = new PrefixMap<Route>();
  readonly #listeners: Array<(change: RouteChange) => void> = [];
  readonly #replaceListeners: Array<() => void> = [];

  get size(): number {
    return this.#byPath.size;
  }

  /** The route whose prefix is the longest match for `path` (already decoded, no query). */
  lookup(path: string): Route | undefined {
    return this.#byPath.lookup(path);
  }

  get(path: string): Route | undefined {
    return this.#byPath.get(path);
  }

  all(): IterableIterator<Route> {
    return this.#byPath.values();
  }

  /**
   * Applies a change; `data.target` must already be valid (stores check before writing).
   * `target` is that target already parsed, when the writer has it (the API validated it).
   */
  apply(change: RouteChange, target?: Target): void {
    if (change.type === 'delete') {
      this.#byPath.delete(change.path);
    } else {
      const route: Route = {
        path: change.path,
        data: change.data,
        target: target ?? parseTarget(change.data.target),
        lastActivity: change.lastActivity ?? Date.now(),
      };
      // A re-written route moves to the end of the listing, as CHP's does.
      this.#byPath.set(change.path, route);
    }
    for (const listener of this.#listeners) listener(change);
  }

  /** Replaces the whole table, keeping the newer activity of routes present in both. */
  replace(routes: Iterable<{ path: string; data: RouteData; lastActivity?: number }>): void {
    const previous = new Map<string, Route>();
    for (const route of this.#byPath.values()) previous.set(route.path, route);
    this.#byPath.clear();
    for (const { path, data, lastActivity } of routes) {
      const route: Route = {
        path,
        data,
        target: parseTarget(data.target),
        lastActivity: Math.max(lastActivity ?? 0, previous.get(path)?.lastActivity ?? 0) || Date.now(),
      };
      this.#byPath.set(path, route);
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
