// Forwarding: routing → header policy → the target client → the response relay, for HTTP; the
// websocket tunnels for upgrades. This file only wires those parts for each request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '@seahorse/runtime';
import type { TargetTls } from './connect.ts';
import type { ErrorPages } from './error-pages.ts';
import { BadRequestPath } from './errors.ts';
import { type HeaderPolicy, requestHeaders } from './header-policy.ts';
import type { ProxyMetrics } from './metrics.ts';
import { PipelineLimit } from './pipelining.ts';
import { type RelayContext, ResponseRelay } from './response-relay.ts';
import type { RouteTable } from './routes.ts';
import { Router, type RoutingOptions } from './routing.ts';
import { UpstreamClient } from './upstream.ts';
import { WebsocketTunnels } from './websocket-tunnel.ts';

export interface ForwardOptions extends RoutingOptions, HeaderPolicy {
  /** Idle timeout of incoming sockets (CHP's `--timeout`), 0 for none. */
  timeoutMs: number;
  /** CHP's `--proxy-timeout`: the target connection idle this long ends the exchange, 0 for none. */
  proxyTimeoutMs: number;
  /** `--proxy-headers-timeout`: no response head this long after the request, 0 for none. */
  proxyHeadersTimeoutMs: number;
  /** `--proxy-body-timeout`: no response body bytes for this long, 0 for none. */
  proxyBodyTimeoutMs: number;
  /** Options for TLS connections to `https://` targets (`--client-ssl-*`, `--insecure`). */
  clientTls: TargetTls;
}

export class Forwarder {
  readonly #options: ForwardOptions;
  readonly #router: Router;
  readonly #relay: RelayContext;
  readonly #metrics: ProxyMetrics;
  readonly #errors: ErrorPages;
  readonly #log: Logger;
  /** Pooled keep-alive connections to the targets. */
  readonly #client: UpstreamClient;
  readonly #tunnels: WebsocketTunnels;
  /** Bounds what one client connection has in flight to the targets. */
  readonly #pipeline = new PipelineLimit();

  constructor(
    options: ForwardOptions,
    table: RouteTable,
    metrics: ProxyMetrics,
    errors: ErrorPages,
    log: Logger,
  ) {
    this.#options = options;
    this.#router = new Router(options, table, metrics);
    this.#relay = { policy: options, metrics, errors, log };
    this.#metrics = metrics;
    this.#errors = errors;
    this.#log = log;
    this.#client = new UpstreamClient({
      tls: options.clientTls,
      idleTimeoutMs: options.proxyTimeoutMs,
      headersTimeoutMs: options.proxyHeadersTimeoutMs,
      bodyTimeoutMs: options.proxyBodyTimeoutMs,
    });
    this.#tunnels = new WebsocketTunnels(
      { policy: options, clientTls: options.clientTls, proxyTimeoutMs: options.proxyTimeoutMs },
      this.#router,
      metrics,
      log,
    );
  }

  /** Stamps activity on routes whose websockets moved bytes since the last sweep. */
  sweepWebsocketActivity(): void {
    this.#tunnels.sweepActivity();
  }

  /** Open websocket connections, for metrics and shutdown. */
  get websocketCount(): number {
    return this.#tunnels.size;
  }

  /** Proxies one HTTP request. */
  handleRequest(req: IncomingMessage, res: ServerResponse): void {
    const started = this.#metrics.enabled ? performance.now() : 0;
    this.#metrics.webRequest();
    const match = this.#router.matchRequest(req.url, req.headers.host);
    if (match instanceof BadRequestPath) {
      this.#metrics.proxied(400, 0);
      this.#errors.send(req, res, 400);
      return;
    }
    if (!match) {
      this.#metrics.proxied(404, 0);
      this.#log.debug({ path: req.url }, 'no route');
      this.#errors.send(req, res, 404);
      return;
    }
    const { route } = match;
    if (this.#options.timeoutMs > 0) req.socket.setTimeout(this.#options.timeoutMs);
    const body = hasBody(req);
    // As CHP, a request body is activity even when the answer is an error.
    if (body) route.lastActivity = Date.now();
    this.#pipeline.run(req.socket, (release) => {
      // A pipelined request whose client left while it waited for its turn.
      if (req.socket.destroyed) {
        release();
        return;
      }
      const relay = new ResponseRelay(this.#relay, req, res, route, started);
      const exchange = this.#client.request(
        route.target,
        {
          method: req.method ?? 'GET',
          path: match.path,
          headers: requestHeaders(req, route.target, this.#options, false),
          body: body ? req : null,
        },
        relay,
      );
      relay.exchange = exchange;
      res.once('close', () => {
        release();
        // The client went away: stop talking to the target on its behalf.
        if (!res.writableFinished) exchange.abort();
      });
    });
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.#tunnels.handleUpgrade(req, socket, head);
  }

  /** Closes every websocket; used when draining, since they would never finish by themselves. */
  closeWebsockets(): void {
    this.#tunnels.closeAll();
  }

  close(): void {
    this.#tunnels.close();
    this.#client.close();
  }
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined;
}
