// Routing: which route a request belongs to and the path its target is asked for, the way CHP
// computes them (dot segments resolved, the route's prefix cut unless --include-prefix, the
// target's own path and query prepended unless --no-prepend-path, the host first with
// --host-routing).
import { BadRequestPath } from './errors.ts';
import type { ProxyMetrics } from './metrics.ts';
import { countSegments, joinTarget, lookupPath, removeDotSegments, stripSegments } from './paths.ts';
import type { Route, RouteTable } from './routes.ts';

export interface RoutingOptions {
  prependPath: boolean;
  includePrefix: boolean;
  hostRouting: boolean;
}

export interface Match {
  route: Route;
  /** Path and query to request from the target. */
  path: string;
}

export class Router {
  readonly #options: RoutingOptions;
  readonly #table: RouteTable;
  readonly #metrics: ProxyMetrics;

  constructor(options: RoutingOptions, table: RouteTable, metrics: ProxyMetrics) {
    this.#options = options;
    this.#table = table;
    this.#metrics = metrics;
  }

  /**
   * Routes a request URL and computes the path to send to the target. Undefined when no route
   * matches; throws BadRequestPath when the path cannot be decoded.
   */
  match(url: string, host: string | undefined): Match | undefined {
    const queryAt = url.indexOf('?');
    const rawPath = removeDotSegments(queryAt === -1 ? url : url.slice(0, queryAt));
    const query = queryAt === -1 ? '' : url.slice(queryAt + 1);
    let key = lookupPath(rawPath);
    let hostSegments = 0;
    if (this.#options.hostRouting) {
      key = `/${hostname(host)}${key}`;
      hostSegments = 1;
    }
    let route: Route | undefined;
    if (this.#metrics.enabled) {
      const started = performance.now();
      route = this.#table.lookup(key);
      this.#metrics.findTarget((performance.now() - started) / 1000);
    } else {
      route = this.#table.lookup(key);
    }
    if (!route) return undefined;

    let path = rawPath;
    if (!this.#options.includePrefix) path = stripSegments(rawPath, countSegments(route.path) - hostSegments);
    else if (rawPath === '/') path = '';
    const target = route.target;
    return {
      route,
      path: this.#options.prependPath
        ? joinTarget(target.pathname, target.query, path, query)
        : joinTarget('', '', path, query),
    };
  }

  /** As `match`, with an undecodable path returned instead of thrown. */
  matchRequest(url: string | undefined, host: string | undefined): Match | BadRequestPath | undefined {
    try {
      return this.match(url ?? '/', host);
    } catch (error) {
      if (error instanceof BadRequestPath) return error;
      throw error;
    }
  }
}

/** Host header without its port; a request without Host routes as the empty host. */
export function hostname(host: string | undefined): string {
  if (!host) return '';
  if (host.charCodeAt(0) === 91) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}
