// The REST API JupyterHub programs the proxy through, as configurable-http-proxy answers it:
// GET/POST/DELETE /api/routes[/<path>] with `Authorization: token <t>`.
import * as crypto from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@seahorse/runtime';
import { RouteError, StoreUnavailableError } from './errors.ts';
import type { ProxyMetrics } from './metrics.ts';
import { removeDotSegments } from './paths.ts';
import { normalizePath, parseTarget, type RouteData, type RouteTable, type Target } from './routes.ts';
import type { RouteWriter } from './store.ts';

export interface ApiOptions {
  /** CONFIGPROXY_AUTH_TOKEN; undefined leaves the API open, as CHP does (with a warning). */
  authToken: string | undefined;
  hostRouting: boolean;
  /** Largest accepted POST body; route data is small, so this guards memory, not features. */
  maxBodyBytes: number;
}

const prefix = '/api/routes';

export class RoutesApi {
  readonly #options: ApiOptions;
  readonly #table: RouteTable;
  readonly #writer: RouteWriter;
  readonly #metrics: ProxyMetrics;
  readonly #log: Logger;
  readonly #tokenDigest: Buffer | undefined;

  readonly #activity: { sync(): Promise<void> };

  constructor(
    options: ApiOptions,
    table: RouteTable,
    writer: RouteWriter,
    activity: { sync(): Promise<void> },
    metrics: ProxyMetrics,
    log: Logger,
  ) {
    this.#options = options;
    this.#activity = activity;
    this.#table = table;
    this.#writer = writer;
    this.#metrics = metrics;
    this.#log = log;
    this.#tokenDigest = options.authToken ? digest(options.authToken) : undefined;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const started = performance.now();
    res.once('finish', () => {
      const status = res.statusCode;
      this.#metrics.api(status);
      if (status < 400 && !this.#log.isLevelEnabled('info')) return;
      const fields = {
        method: req.method,
        path: (req.url ?? '').split('?', 1)[0],
        status,
        ms: Math.round(performance.now() - started),
      };
      if (status >= 500) this.#log.error(fields, 'api request');
      else if (status >= 400) this.#log.warn(fields, 'api request');
      else this.#log.info(fields, 'api request');
    });
    this.#dispatch(req, res).catch((error: unknown) => {
      if (error instanceof StoreUnavailableError) {
        reply(res, 503, `${error.message}\n`);
        return;
      }
      this.#log.error({ err: error, method: req.method, path: req.url }, 'api handler failed');
      reply(res, 500, 'Internal error while handling the request; see the proxy log\n');
    });
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const rawPath = removeDotSegments(queryAt === -1 ? url : url.slice(0, queryAt));
    if (!rawPath.startsWith(prefix) || (rawPath.length > prefix.length && rawPath[prefix.length] !== '/')) {
      reply(res, 404, 'Not Found');
      return;
    }
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'POST' && method !== 'DELETE') {
      res.setHeader('allow', 'GET, POST, DELETE');
      reply(res, 405, 'Method not supported');
      return;
    }
    if (!this.#authorized(req.headers.authorization)) {
      this.#log.debug({ method, path: rawPath }, 'rejecting api request without a valid token');
      reply(res, 403, '');
      return;
    }
    const suffix = rawPath.slice(prefix.length);
    let path: string;
    try {
      path = normalizePath(suffix);
    } catch (error) {
      reply(res, 400, `${(error as Error).message}\n`);
      return;
    }
    if (method === 'GET') {
      if (suffix === '' || suffix === '/')
        await this.#list(res, new URLSearchParams(queryAt === -1 ? '' : url.slice(queryAt + 1)));
      else this.#getOne(res, path);
    } else if (method === 'POST') {
      await this.#add(req, res, path);
    } else if (suffix === '') {
      reply(
        res,
        400,
        'DELETE needs a route path: DELETE /api/routes/<path> (DELETE /api/routes/ removes the default route)\n',
      );
    } else {
      await this.#remove(res, path);
    }
  }

  #authorized(header: string | undefined): boolean {
    if (!this.#tokenDigest) return true;
    if (!header) return false;
    const match = /^(?:token|bearer)\s+(\S+)\s*$/i.exec(header);
    // Compare digests: equal lengths, and time independent of where the tokens differ.
    return match !== null && crypto.timingSafeEqual(digest(match[1]!), this.#tokenDigest);
  }

  async #list(res: ServerResponse, query: URLSearchParams): Promise<void> {
    const raw = query.get('inactiveSince') || query.get('inactive_since');
    let since = Number.POSITIVE_INFINITY;
    if (raw) {
      since = Date.parse(raw);
      if (!Number.isFinite(since)) {
        reply(
          res,
          400,
          `Invalid datestamp '${raw}' must be ISO8601.${raw.includes(' ') ? " (Encode '+' in the query as %2B.)" : ''}\n`,
        );
        return;
      }
    }
    // The whole fleet's activity, so the idle culler may ask any replica.
    await this.#activity.sync().catch((error: unknown) => {
      this.#log.warn({ err: (error as Error).message }, 'answering with local activity only');
    });
    const body: Record<string, unknown> = {};
    for (const route of this.#table.all()) {
      if (route.lastActivity < since) body[route.path] = present(route.data, route.lastActivity);
    }
    this.#metrics.apiRouteGet();
    replyJson(res, 200, body);
  }

  #getOne(res: ServerResponse, path: string): void {
    const route = this.#table.get(path);
    if (!route) reply(res, 404, '');
    else replyJson(res, 200, present(route.data, route.lastActivity));
  }

  async #add(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const body = await readBody(req, this.#options.maxBodyBytes);
    if (body === undefined) {
      reply(res, 413, `Request body too large: the limit is ${this.#options.maxBodyBytes} bytes\n`);
      req.resume();
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (error) {
      reply(res, 400, `Body not valid JSON: ${error}\n`);
      return;
    }
    const data =
      parsed && typeof parsed === 'object' && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : {};
    if (typeof data.target !== 'string') {
      this.#log.warn({ route: path }, "bad POST data: no 'target' string");
      reply(res, 400, "Must specify 'target' as string\n");
      return;
    }
    let target: Target;
    try {
      target = parseTarget(data.target);
    } catch (error) {
      if (!(error instanceof RouteError)) throw error;
      reply(res, 400, `${error.message}\n`);
      return;
    }
    // `last_activity` is the proxy's to report, not the writer's to set (as CHP). Copying the
    // object only when it is there keeps the common write cheap.
    let stored = data as RouteData;
    if ('last_activity' in data) {
      const { last_activity: _ignored, ...rest } = data;
      stored = rest as RouteData;
    }
    if (this.#options.hostRouting && path !== '/') stored.host = path.split('/')[1];
    await this.#writer.set(path, stored, target);
    this.#metrics.apiRouteAdd();
    this.#log.info({ route: path, target: stored.target }, 'route added');
    reply(res, 201, '');
  }

  async #remove(res: ServerResponse, path: string): Promise<void> {
    const existed = await this.#writer.delete(path);
    this.#metrics.apiRouteDelete();
    if (!existed) {
      reply(res, 404, '');
      return;
    }
    this.#log.info({ route: path }, 'route removed');
    reply(res, 204, '');
  }
}

/** Route data as JupyterHub reads it: the stored keys plus `last_activity` in ISO 8601. */
function present(data: RouteData, lastActivity: number): Record<string, unknown> {
  return { ...data, last_activity: new Date(lastActivity).toISOString() };
}

// One-shot hashing (Node 20.12+) costs half of a Hash object per API request.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'buffer') => Buffer }).hash;

function digest(token: string): Buffer {
  return oneShot ? oneShot('sha256', token, 'buffer') : crypto.createHash('sha256').update(token).digest();
}

/** Reads a body up to `limit` bytes; undefined when it is larger. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

function reply(res: ServerResponse, status: number, body: string): void {
  if (res.headersSent) return;
  if (body === '') {
    res.writeHead(status);
    res.end();
    return;
  }
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function replyJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
