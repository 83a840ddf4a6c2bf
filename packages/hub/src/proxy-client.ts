// A client of configurable-http-proxy's REST API, used as JupyterHub's ConfigurableHTTPProxy
// uses it: `Authorization: token <t>`, routes under /api/routes with the routespec's trailing
// slash removed, `jupyterhub: true` in every route the hub adds, 5xx and connection failures
// retried with backoff (every call here is idempotent), and one keep-alive pool per client.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Logger } from '@seahorse/runtime';
import {
  ProxyAuthError,
  ProxyResponseError,
  ProxyTimeoutError,
  ProxyUnreachableError,
} from './proxy-errors.ts';

export interface ProxyClientOptions {
  /** ConfigurableHTTPProxy.api_url, e.g. http://127.0.0.1:8001 */
  apiUrl: string;
  /** ConfigurableHTTPProxy.auth_token (CONFIGPROXY_AUTH_TOKEN); never logged. */
  authToken: string;
  /** Per attempt, from sending to the last byte of the answer; JupyterHub's request_timeout, 10 s. */
  timeoutMs?: number;
  /** How long failed attempts (unreachable, timeout, 5xx) are retried; JupyterHub's 30 s. 0: never. */
  retryTimeoutMs?: number;
  /** Concurrent connections to the proxy; JupyterHub's semaphore allows 10 requests at once. */
  maxSockets?: number;
  /** CA to trust when the API is HTTPS with a private CA (JupyterHub's internal_ssl). */
  ca?: string | Buffer;
  /** Debug lines per request and warnings on retries; no token ever. */
  log?: Logger;
}

/** A route as the proxy lists it: its target, its last activity, and whatever data it was added with. */
export interface ProxyRoute {
  target: string;
  last_activity?: string;
  [key: string]: unknown;
}

const maxBodyBytes = 64 * 1024 * 1024;

export class ProxyClient {
  readonly apiUrl: string;
  readonly #base: URL;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #retryTimeoutMs: number;
  readonly #agent: HttpAgent;
  readonly #https: boolean;
  readonly #log: Logger | undefined;

  constructor(options: ProxyClientOptions) {
    this.#base = new URL(options.apiUrl);
    if (this.#base.protocol !== 'http:' && this.#base.protocol !== 'https:') {
      throw new TypeError(`ConfigurableHTTPProxy.api_url must be http:// or https://, not ${options.apiUrl}`);
    }
    this.apiUrl = options.apiUrl;
    this.#token = options.authToken;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#retryTimeoutMs = options.retryTimeoutMs ?? 30_000;
    this.#https = this.#base.protocol === 'https:';
    const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 10 };
    this.#agent = this.#https
      ? new HttpsAgent({ ...agentOptions, ca: options.ca })
      : new HttpAgent(agentOptions);
    this.#log = options.log;
  }

  /**
   * Adds (or replaces) the route for `routespec` (JupyterHub's escaped form, e.g. '/user/a%40b/')
   * to `target`, with `data` and `jupyterhub: true`, as JupyterHub's add_route sends it.
   */
  async addRoute(routespec: string, target: string, data: Record<string, unknown> = {}): Promise<void> {
    const body = JSON.stringify({ ...data, target, jupyterhub: true });
    await this.#call('POST', routespecToChpPath(routespec), body, [201]);
  }

  /**
   * Deletes the route. A route the proxy does not have is not an error (the goal holds), only a
   * warning, as in JupyterHub's delete_route.
   */
  async deleteRoute(routespec: string): Promise<void> {
    const { status } = await this.#call('DELETE', routespecToChpPath(routespec), undefined, [204, 404]);
    if (status === 404) this.#log?.warn({ route: routespec }, 'route already deleted');
  }

  /**
   * The proxy's whole table, keyed by path as the proxy stores it (unescaped; see
   * routespecFromChpPath), or only the routes idle since `inactiveSince`.
   */
  async getRoutes(inactiveSince?: Date): Promise<Record<string, ProxyRoute>> {
    const query = inactiveSince ? `?inactive_since=${encodeURIComponent(inactiveSince.toISOString())}` : '';
    const { body } = await this.#call('GET', query, undefined, [200]);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new ProxyResponseError(this.apiUrl, 'GET', '/api/routes', 200, 'the body is not JSON');
    }
    if (!isPlainObject(parsed)) {
      throw new ProxyResponseError(this.apiUrl, 'GET', '/api/routes', 200, 'the body is not a JSON object');
    }
    for (const [path, route] of Object.entries(parsed)) {
      if (!isPlainObject(route) || typeof route.target !== 'string') {
        throw new ProxyResponseError(
          this.apiUrl,
          'GET',
          '/api/routes',
          200,
          `the route ${JSON.stringify(path)} has no string target`,
        );
      }
    }
    // JSON.parse made every key an own property (even "__proto__"), so the object is returned as is.
    return parsed as Record<string, ProxyRoute>;
  }

  /** Closes the pooled connections; the client must not be used afterwards. */
  close(): void {
    this.#agent.destroy();
  }

  /** One API call, retried while the proxy is unreachable, slow or answers 5xx, up to retryTimeoutMs. */
  async #call(
    method: string,
    chpPathAndQuery: string,
    body: string | undefined,
    expected: number[],
  ): Promise<{ status: number; body: string }> {
    const path = `${this.#base.pathname.replace(/\/+$/, '')}/api/routes${chpPathAndQuery}`;
    const giveUpAt = Date.now() + this.#retryTimeoutMs;
    let backoffMs = 100;
    for (let attempt = 1; ; attempt++) {
      let failure: Error;
      try {
        const started = Date.now();
        const res = await this.#attempt(method, path, body);
        this.#log?.debug({ method, path, status: res.status, ms: Date.now() - started }, 'proxy api');
        if (expected.includes(res.status)) return res;
        if (res.status === 401 || res.status === 403) throw new ProxyAuthError(this.apiUrl, res.status);
        failure = new ProxyResponseError(this.apiUrl, method, path, res.status, excerpt(res.body));
        if (res.status < 500) throw failure;
      } catch (error) {
        if (!(error instanceof ProxyUnreachableError || error instanceof ProxyTimeoutError)) throw error;
        failure = error;
      }
      const waitMs = Math.min(backoffMs, giveUpAt - Date.now());
      if (waitMs <= 0) throw failure;
      this.#log?.warn({ method, path, attempt, err: failure.message }, 'proxy api request failed; retrying');
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      backoffMs = Math.min(backoffMs * 2, 2000);
    }
  }

  /** A single request; a reused keep-alive socket the proxy had closed is retried once at once. */
  async #attempt(
    method: string,
    path: string,
    body: string | undefined,
  ): Promise<{ status: number; body: string }> {
    try {
      return await this.#send(method, path, body);
    } catch (error) {
      if ((error as { reusedSocket?: boolean }).reusedSocket) return this.#send(method, path, body);
      throw error;
    }
  }

  #send(method: string, path: string, body: string | undefined): Promise<{ status: number; body: string }> {
    const headers: Record<string, string | number> = { authorization: `token ${this.#token}` };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    const request = this.#https ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      let settled = false;
      const finish = (error: Error | undefined, value?: { status: number; body: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(value!);
      };
      const req = request(
        {
          protocol: this.#base.protocol,
          hostname: this.#base.hostname,
          port: this.#base.port,
          method,
          path,
          headers,
          agent: this.#agent,
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBodyBytes) {
              req.destroy();
              finish(
                new ProxyResponseError(
                  this.apiUrl,
                  method,
                  path,
                  res.statusCode ?? 0,
                  'the body exceeds 64 MiB',
                ),
              );
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () =>
            finish(undefined, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', (error) => finish(this.#unreachable(error)));
          res.on('close', () => {
            if (!res.complete) finish(new ProxyUnreachableError(this.apiUrl, 'the answer was cut off'));
          });
        },
      );
      const timer = setTimeout(() => {
        finish(new ProxyTimeoutError(this.apiUrl, method, path, this.#timeoutMs));
        req.destroy();
      }, this.#timeoutMs);
      req.on('error', (error) => {
        const wrapped = this.#unreachable(error);
        if (req.reusedSocket) Object.assign(wrapped, { reusedSocket: true });
        finish(wrapped);
      });
      req.end(body);
    });
  }

  #unreachable(error: Error): ProxyUnreachableError {
    const code = (error as NodeJS.ErrnoException).code;
    return new ProxyUnreachableError(this.apiUrl, code ?? error.message, { cause: error });
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function excerpt(body: string): string {
  const text = body.replace(/\s+/g, ' ').trim();
  if (!text) return 'an empty body';
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text);
}

const pathSafe = /[A-Za-z0-9\-._~!$&'()*+,;=:@/]/;

/**
 * The API path of a routespec, as JupyterHub's _routespec_to_chp_path: a leading '/' (host
 * routes 'host.tld/path/' included), no trailing '/' except for '/' itself. Characters a URL path
 * cannot hold are percent-encoded; existing %XX escapes are kept, so an escaped routespec passes
 * unchanged.
 */
export function routespecToChpPath(routespec: string): string {
  let path = routespec.startsWith('/') ? routespec : `/${routespec}`;
  if (path !== '/') path = path.replace(/\/+$/, '') || '/';
  let out = '';
  for (let i = 0; i < path.length; i++) {
    const char = path[i]!;
    if (pathSafe.test(char)) out += char;
    else if (char === '%' && /^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) out += char;
    else {
      const codePoint = path.codePointAt(i)!;
      const whole = String.fromCodePoint(codePoint);
      for (const byte of Buffer.from(whole, 'utf8'))
        out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
      i += whole.length - 1;
    }
  }
  return out;
}

/**
 * The routespec of a path the proxy lists (which it stores unescaped), as JupyterHub's
 * _routespec_from_chp_path: re-escaped as Python's quote(path, safe='@/~'), ending in '/', and
 * without the leading '/' for host routing.
 */
export function routespecFromChpPath(chpPath: string, hostRouting = false): string {
  let out = '';
  for (const byte of Buffer.from(chpPath, 'utf8')) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.\-~@/]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (hostRouting) out = out.replace(/^\/+/, '');
  return out.endsWith('/') ? out : `${out}/`;
}
