// Forwarding: finds the route for a request, rewrites its path and headers the way CHP does,
// and streams it to the target and back. HTTP and websocket upgrades share the routing code.
import {
  type ClientRequest,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import type { Logger } from '@seahorse/runtime';
import type { ErrorPages } from './error-pages.ts';
import type { ProxyMetrics } from './metrics.ts';
import {
  BadRequestPath,
  countSegments,
  joinTarget,
  lookupPath,
  removeDotSegments,
  stripSegments,
} from './paths.ts';
import type { Route, RouteTable } from './routes.ts';
import { type Exchange, UpstreamClient, type UpstreamError, type UpstreamHandler } from './upstream.ts';

export interface ForwardOptions {
  xForward: boolean;
  prependPath: boolean;
  includePrefix: boolean;
  hostRouting: boolean;
  changeOrigin: boolean;
  autoRewrite: boolean;
  protocolRewrite: string | undefined;
  /** Lower-cased names; applied after every other header change, so they win. */
  customHeaders: ReadonlyArray<readonly [string, string]>;
  /** Idle timeout of incoming sockets (CHP's `--timeout`), 0 for none. */
  timeoutMs: number;
  /** How long to wait for a target's response (CHP's `--proxy-timeout`), 0 for none. */
  proxyTimeoutMs: number;
  /** Options for TLS connections to `https://` targets (`--client-ssl-*`, `--insecure`). */
  clientTls: { key?: Buffer; cert?: Buffer; ca?: Buffer[]; rejectUnauthorized: boolean };
  /** Whether the public listener is TLS, for `X-Forwarded-Proto` and `-Port`. */
  listenerSecure: boolean;
}

// Headers that describe one connection and are not passed on (RFC 9110 section 7.6.1).
const hopByHop = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
]);
const redirectStatus = new Set([201, 301, 302, 307, 308]);

export interface Match {
  route: Route;
  /** Path and query to request from the target. */
  path: string;
}

export class Forwarder {
  readonly #options: ForwardOptions;
  readonly #table: RouteTable;
  readonly #metrics: ProxyMetrics;
  readonly #errors: ErrorPages;
  readonly #log: Logger;
  /** Pooled keep-alive connections to the targets. */
  readonly #client: UpstreamClient;
  /** Open websockets: client socket → its route, the target socket and the bytes seen so far. */
  readonly #websockets = new Map<
    Duplex,
    { route: Route; target: Duplex & { bytesRead: number }; bytes: number }
  >();
  #activitySweep: NodeJS.Timeout | undefined;

  constructor(
    options: ForwardOptions,
    table: RouteTable,
    metrics: ProxyMetrics,
    errors: ErrorPages,
    log: Logger,
  ) {
    this.#options = options;
    this.#table = table;
    this.#metrics = metrics;
    this.#errors = errors;
    this.#log = log;
    this.#client = new UpstreamClient({ tls: options.clientTls, headersTimeoutMs: options.proxyTimeoutMs });
  }

  /**
   * Stamps activity on routes whose websockets moved bytes (either way) since the last sweep.
   * Runs every second and before activity is reported, so relaying does no work per message.
   */
  sweepWebsocketActivity(): void {
    const now = Date.now();
    for (const [socket, entry] of this.#websockets) {
      const bytes = (socket as Duplex & { bytesRead: number }).bytesRead + entry.target.bytesRead;
      if (bytes !== entry.bytes) {
        entry.bytes = bytes;
        entry.route.lastActivity = now;
      }
    }
  }

  /** Open websocket connections, for metrics and shutdown. */
  get websocketCount(): number {
    return this.#websockets.size;
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

  /** Proxies one HTTP request. */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = this.#metrics.enabled ? performance.now() : 0;
    this.#metrics.webRequest();
    const match = this.#matchRequest(req);
    if (match instanceof BadRequestPath) {
      this.#countError(400);
      this.#errors.send(req, res, 400);
      return;
    }
    if (!match) {
      this.#countError(404);
      this.#log.debug({ path: req.url }, 'no route');
      this.#errors.send(req, res, 404);
      return;
    }
    const { route } = match;
    const target = route.target;
    if (this.#options.timeoutMs > 0) req.socket.setTimeout(this.#options.timeoutMs);
    const body = hasBody(req.headers);
    // As CHP, a request body is activity even when the answer is an error.
    if (body) route.lastActivity = Date.now();
    const headers = this.#outgoingHeaders(req, route, false);
    const relay = new ResponseRelay(this, req, res, route, started);
    relay.exchange = this.#client.request(
      target,
      { method: req.method ?? 'GET', path: match.path, headers, body: body ? req : null },
      relay,
    );
    // The client went away: stop talking to the target on its behalf.
    res.once('close', () => {
      if (!res.writableFinished) relay.exchange!.abort();
    });
  }

  /** A target's answer has begun: status and headers go to the client. */
  responseStarted(
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    status: number,
    statusText: string,
    raw: string[],
  ): void {
    const headers = this.#responseHeaders(req, status, raw, route);
    // A target that sends no reason phrase gets the standard one, as Node's own responses do.
    res.writeHead(status, statusText || undefined, headers);
    // Event streams must reach the client as they are written.
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i]!.length === 12 && headers[i]!.toLowerCase() === 'content-type') {
        if (headers[i + 1]!.startsWith('text/event-stream')) res.flushHeaders();
        break;
      }
    }
  }

  responseEnded(route: Route, status: number, started: number): void {
    // As CHP: only successful responses count as a user's activity.
    if (status < 300) route.lastActivity = Date.now();
    this.#metrics.proxied(status, started > 0 ? (performance.now() - started) / 1000 : 0);
  }

  /** The target could not be reached or stopped answering. */
  targetFailed(req: IncomingMessage, res: ServerResponse, route: Route, error: UpstreamError): void {
    // The client left first: nobody to answer. (req.destroyed is no sign: a read request is.)
    if (res.writableEnded || res.destroyed || req.socket.destroyed) return;
    const status = error.code === 'HEADERS_TIMEOUT' ? 504 : 503;
    this.#countError(status);
    this.#log.warn(
      { route: route.path, target: route.target.href, code: error.code, err: error.message },
      'proxy error',
    );
    if (res.headersSent) res.destroy();
    else this.#errors.send(req, res, status);
  }

  /** Proxies a websocket upgrade and relays bytes both ways. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    // Only websocket upgrades over GET are proxied, as CHP does; others get no answer.
    if (req.method !== 'GET' || req.headers.upgrade?.toLowerCase() !== 'websocket') {
      socket.destroy();
      return;
    }
    this.#metrics.websocketRequest();
    const match = this.#matchRequest(req);
    if (match instanceof BadRequestPath) {
      this.#countError(400);
      writeRawResponse(socket, 400, 'Bad Request', `${match.message}\n`);
      return;
    }
    if (!match) {
      this.#countError(404);
      writeRawResponse(socket, 404, 'Not Found', 'No route for this websocket path\n');
      return;
    }
    const { route } = match;
    const target = route.target;
    const proxyReq = this.#upgradeRequest(req, match);
    proxyReq.on('error', (error: NodeJS.ErrnoException) => {
      this.#countError(503);
      this.#log.warn(
        { route: route.path, target: target.href, code: error.code, err: error.message },
        'websocket proxy error',
      );
      writeRawResponse(socket, 503, 'Service Unavailable', 'The websocket target is unavailable\n');
    });
    // The target answered without upgrading (auth failure, 404): relay that answer and close.
    proxyReq.on('response', (proxyRes) => {
      this.#metrics.proxied(proxyRes.statusCode ?? 502, 0);
      socket.write(
        statusAndHeaders(`HTTP/1.1 ${proxyRes.statusCode} ${proxyRes.statusMessage}`, proxyRes.rawHeaders),
      );
      proxyRes.pipe(socket);
    });
    proxyReq.on('upgrade', (proxyRes, proxySocket, proxyHead) => {
      this.#metrics.proxied(101, 0);
      proxySocket.on('error', () => socket.destroy());
      if (socket.destroyed) {
        proxySocket.destroy();
        return;
      }
      proxySocket.setNoDelay(true);
      proxySocket.setTimeout(0);
      proxySocket.setKeepAlive(true);
      socket.write(statusAndHeaders('HTTP/1.1 101 Switching Protocols', proxyRes.rawHeaders));
      if (proxyHead.length > 0) socket.write(proxyHead);
      if (head.length > 0) proxySocket.write(head);
      proxySocket.pipe(socket);
      socket.pipe(proxySocket);
      // Traffic either way is activity (a kernel streaming output is as alive as a user
      // typing); the sweep reads it from the byte counters.
      const bytes = (socket as Duplex & { bytesRead: number }).bytesRead + proxySocket.bytesRead;
      this.#websockets.set(socket, { route, target: proxySocket, bytes });
      route.lastActivity = Date.now();
      if (!this.#activitySweep) {
        this.#activitySweep = setInterval(() => this.sweepWebsocketActivity(), 1000);
        this.#activitySweep.unref();
      }
      const close = () => {
        this.#websockets.delete(socket);
        socket.destroy();
        proxySocket.destroy();
      };
      socket.once('close', close);
      proxySocket.once('close', close);
    });
    socket.once('close', () => {
      if (!proxyReq.writableFinished || !proxyReq.destroyed) proxyReq.destroy();
    });
    proxyReq.end();
  }

  /** Closes every websocket; used when draining, since they would never finish by themselves. */
  closeWebsockets(): void {
    for (const socket of this.#websockets.keys()) socket.destroy();
  }

  close(): void {
    clearInterval(this.#activitySweep);
    this.closeWebsockets();
    this.#client.close();
  }

  /** The route for a request, undefined without one, or the reason its path is unusable. */
  #matchRequest(req: IncomingMessage): Match | BadRequestPath | undefined {
    try {
      return this.match(req.url ?? '/', req.headers.host);
    } catch (error) {
      if (error instanceof BadRequestPath) return error;
      throw error;
    }
  }

  /** The request that asks a target to upgrade; such a connection is never pooled. */
  #upgradeRequest(req: IncomingMessage, match: Match): ClientRequest {
    const target = match.route.target;
    const proxyReq = (target.secure ? httpsRequest : httpRequest)({
      agent: false,
      host: target.hostname,
      port: target.port,
      socketPath: target.socketPath,
      method: req.method,
      path: match.path,
      headers: this.#outgoingHeaders(req, match.route, true),
      setHost: false,
      ...(target.secure ? { servername: target.hostname, ...this.#options.clientTls } : {}),
    });
    if (this.#options.proxyTimeoutMs > 0) {
      proxyReq.setTimeout(this.#options.proxyTimeoutMs, () => {
        proxyReq.destroy(
          Object.assign(new Error('the target did not answer in time'), { code: 'ETIMEDOUT' }),
        );
      });
    }
    return proxyReq;
  }

  #countError(status: number): void {
    this.#metrics.proxied(status, 0);
  }

  #outgoingHeaders(req: IncomingMessage, route: Route, upgrade: boolean): IncomingHttpHeaders {
    const headers = req.headers;
    if (!upgrade) {
      // Headers named in Connection belong to the client's connection, not ours to the target.
      const connection = headers.connection;
      if (connection !== undefined) {
        for (const name of connection.toLowerCase().split(',')) {
          const trimmed = name.trim();
          if (trimmed !== '' && trimmed !== 'close' && trimmed !== 'keep-alive') delete headers[trimmed];
        }
        delete headers.connection;
      }
      if (headers['keep-alive'] !== undefined) delete headers['keep-alive'];
      if (headers['proxy-connection'] !== undefined) delete headers['proxy-connection'];
      if (headers.trailer !== undefined) delete headers.trailer;
      // The body is re-framed on the way out; `100-continue` was answered by our server already.
      if (headers['transfer-encoding'] !== undefined) delete headers['transfer-encoding'];
      if (headers.expect !== undefined) delete headers.expect;
      if (headers.upgrade !== undefined) delete headers.upgrade;
    }
    if (this.#options.xForward) {
      const secure = this.#options.listenerSecure;
      appendForwarded(headers, 'x-forwarded-for', req.socket.remoteAddress ?? '');
      appendForwarded(headers, 'x-forwarded-port', requestPort(headers.host, secure));
      appendForwarded(
        headers,
        'x-forwarded-proto',
        upgrade ? (secure ? 'wss' : 'ws') : secure ? 'https' : 'http',
      );
      if (!upgrade && headers['x-forwarded-host'] === undefined)
        headers['x-forwarded-host'] = headers.host ?? '';
    }
    if (this.#options.changeOrigin) headers.host = route.target.host;
    for (const [name, value] of this.#options.customHeaders) headers[name] = value;
    return headers;
  }

  #responseHeaders(req: IncomingMessage, status: number, raw: readonly string[], route: Route): string[] {
    const out: string[] = [];
    const rewrite =
      (this.#options.autoRewrite || this.#options.protocolRewrite !== undefined) &&
      redirectStatus.has(status);
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (hopByHop.has(name.toLowerCase())) continue;
      let value = raw[i + 1]!;
      if (rewrite && name.length === 8 && name.toLowerCase() === 'location')
        value = this.#rewriteLocation(value, req, route);
      out.push(name, value);
    }
    return out;
  }

  /** `--auto-rewrite` and `--protocol-rewrite`: only redirects that point at the target itself. */
  #rewriteLocation(location: string, req: IncomingMessage, route: Route): string {
    let url: URL;
    try {
      url = new URL(location);
    } catch {
      return location; // relative redirects need no rewriting
    }
    if (url.host !== route.target.host) return location;
    // Built as text: URL's host setter keeps the old port when the new host names none.
    const protocol = this.#options.protocolRewrite
      ? `${this.#options.protocolRewrite.replace(/:$/, '')}:`
      : url.protocol;
    const host = this.#options.autoRewrite && req.headers.host ? req.headers.host : url.host;
    return `${protocol}//${host}${url.pathname}${url.search}${url.hash}`;
  }
}

/** Host header without its port; a request without Host routes as the empty host. */
function hostname(host: string | undefined): string {
  if (!host) return '';
  if (host.charCodeAt(0) === 91) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

function requestPort(host: string | undefined, secure: boolean): string {
  const match = host ? /:(\d+)$/.exec(host) : null;
  return match ? match[1]! : secure ? '443' : '80';
}

function appendForwarded(headers: IncomingHttpHeaders, name: string, value: string): void {
  const existing = headers[name];
  headers[name] = existing ? `${existing},${value}` : value;
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = headers['content-length'];
  return (length !== undefined && length !== '0') || headers['transfer-encoding'] !== undefined;
}

function statusAndHeaders(statusLine: string, rawHeaders: string[]): string {
  let text = statusLine;
  for (let i = 0; i < rawHeaders.length; i += 2) text += `\r\n${rawHeaders[i]}: ${rawHeaders[i + 1]}`;
  return `${text}\r\n\r\n`;
}

function writeRawResponse(socket: Duplex, status: number, reason: string, body: string): void {
  if (socket.destroyed) return;
  const head = `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close`;
  socket.end(`${head}\r\n\r\n${body}`);
}

/**
 * Streams one target response to the client: status and headers, then the body with
 * backpressure, then activity and metrics.
 */
class ResponseRelay implements UpstreamHandler {
  readonly #forwarder: Forwarder;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #route: Route;
  readonly #started: number;
  exchange: Exchange | undefined;
  #status = 0;
  #draining = false;

  constructor(
    forwarder: Forwarder,
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    started: number,
  ) {
    this.#forwarder = forwarder;
    this.#req = req;
    this.#res = res;
    this.#route = route;
    this.#started = started;
  }

  onHeaders(status: number, raw: string[], statusText: string): void {
    this.#status = status;
    this.#forwarder.responseStarted(this.#req, this.#res, this.#route, status, statusText, raw);
  }

  onData(chunk: Buffer): boolean {
    if (this.#res.write(chunk)) return true;
    if (!this.#draining) {
      this.#draining = true;
      this.#res.on('drain', () => this.exchange?.resume());
    }
    return false;
  }

  onComplete(): void {
    this.#res.end();
    this.#forwarder.responseEnded(this.#route, this.#status, this.#started);
  }

  onError(error: UpstreamError): void {
    this.#forwarder.targetFailed(this.#req, this.#res, this.#route, error);
  }
}
