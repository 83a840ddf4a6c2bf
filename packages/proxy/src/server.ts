// Wires the proxy together: route store → table → forwarder, the REST API as one more writer,
// and the listeners (proxy, API, metrics, HTTP→HTTPS redirect) with their lifecycle.
//
// One process plays every part by default. With `--workers N` the parts split: the primary
// keeps the control plane (store, API, metrics, pid file) and N workers the data plane (the
// public listeners), each with a copy of the table fed by the primary (see workers.ts).
import { rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as TlsServerOptions } from 'node:https';
import { formatAddress, Lifecycle, type ListenAddress, type Logger, listen } from '@seahorse/runtime';
import { ActivityFlusher } from './activity.ts';
import { type ApiOptions, RoutesApi } from './api.ts';
import { ErrorPages } from './error-pages.ts';
import { Forwarder, type ForwardOptions } from './forward.ts';
import { loadPrometheusMetrics, noMetrics, type ProxyMetrics } from './metrics.ts';
import { RouteTable } from './routes.ts';
import { openRouteStore, type RouteSource, type StoreOptions } from './store.ts';
import { sendMetrics, WorkerPool, WorkerRouteSource } from './workers.ts';

export interface ProxyOptions {
  listen: ListenAddress;
  apiListen: ListenAddress;
  metricsListen: ListenAddress | undefined;
  /** TLS for the public listener (`--ssl-*`); plain HTTP when undefined. */
  tls: TlsServerOptions | undefined;
  apiTls: TlsServerOptions | undefined;
  /** HTTP listener that redirects to HTTPS (`--redirect-port`, `--redirect-to`). */
  redirect: { port: number; to: number } | undefined;
  defaultTarget: string | undefined;
  errorTarget: string | undefined;
  errorPath: string;
  pidFile: string | undefined;
  keepAliveTimeoutMs: number;
  lameduckMs: number;
  terminationGracePeriodMs: number;
  /** Worker processes sharing the public listeners; 1 runs everything in this process. */
  workers: number;
  /** Where routes live; a worker ignores it and follows the primary instead. */
  store: StoreOptions;
  api: ApiOptions;
  forward: Omit<ForwardOptions, 'listenerSecure'>;
}

type Addresses = {
  proxy?: ListenAddress;
  api?: ListenAddress;
  metrics?: ListenAddress;
  redirect?: ListenAddress;
};

export interface RunningProxy {
  readonly table: RouteTable;
  readonly lifecycle: Lifecycle;
  /** Where each listener of this process ended up (port 0 becomes the port chosen). */
  readonly addresses: Addresses;
  /** Drains and stops everything; the same promise on every call. */
  close(): Promise<void>;
}

/** `single`: everything here; `primary`: control plane and workers; `worker`: public listeners. */
export type ProxyRole = 'single' | 'primary' | 'worker';

const healthPath = '/_chp_healthz';

export async function startProxy(
  options: ProxyOptions,
  log: Logger,
  role: ProxyRole = 'single',
  /** Called with the lifecycle before anything listens (the CLI installs signal handlers). */
  onLifecycle?: (lifecycle: Lifecycle) => void,
): Promise<RunningProxy> {
  const servesProxy = role !== 'primary';
  // Workers never open the store and have no writer: the primary feeds them its table and
  // serves the API. `store` is the writer, present wherever the API is served.
  const store = role === 'worker' ? undefined : await openRouteStore(options.store, options, log);
  const source: RouteSource = store ?? new WorkerRouteSource();
  const lifecycle = new Lifecycle({
    logger: log,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.terminationGracePeriodMs,
  });
  onLifecycle?.(lifecycle);
  const table = new RouteTable();
  let forwarder: Forwarder | undefined;
  // Workers run with the same flags as the primary, so they count when it serves metrics.
  const prometheus = options.metricsListen
    ? await loadPrometheusMetrics({
        routes: () => table.size,
        websockets: () => forwarder?.websocketCount ?? 0,
      })
    : undefined;
  const metrics: ProxyMetrics = prometheus ?? noMetrics;
  const activity = new ActivityFlusher(table, source, metrics, log, options.store.activityFlushMs);
  const pool = role === 'primary' ? new WorkerPool(table, options.workers, source.ready(), log) : undefined;
  const addresses: Addresses = {};

  await source.start(table);

  if (servesProxy) {
    const errors = new ErrorPages(
      {
        errorTarget: options.errorTarget,
        errorPath: options.errorPath,
        clientTls: options.forward.clientTls,
      },
      log,
    );
    const proxyForwarder = new Forwarder(
      { ...options.forward, listenerSecure: options.tls !== undefined },
      table,
      metrics,
      errors,
      log,
    );
    forwarder = proxyForwarder;
    const onProxyRequest = (req: IncomingMessage, res: ServerResponse) => {
      // The probe answers for the proxy itself: exact URL only, as CHP; unready while loading or draining.
      if (req.url === healthPath) {
        const ready = lifecycle.ready;
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
        res.end(
          ready
            ? '{"status":"OK"}'
            : JSON.stringify({
                status: 'not ready',
                reason: lifecycle.shuttingDown ? 'shutting down' : `route store: ${source.status}`,
              }),
        );
        return;
      }
      proxyForwarder.handleRequest(req, res);
    };
    const proxyServer = options.tls
      ? createHttpsServer(options.tls, onProxyRequest)
      : createHttpServer(onProxyRequest);
    tuneServer(proxyServer, options.keepAliveTimeoutMs);
    proxyServer.on('upgrade', (req, socket, head) => proxyForwarder.handleUpgrade(req, socket, head));
    track(lifecycle, proxyServer);
    addresses.proxy = await listen(
      proxyServer,
      options.listen,
      'path' in options.listen ? '--socket' : '--ip/--port',
    );
    if (options.redirect) addresses.redirect = await startRedirect(options, lifecycle);
    lifecycle.onDrain(() => proxyForwarder.closeWebsockets());
    lifecycle.onClose(() => proxyForwarder.close());
  }

  if (source instanceof WorkerRouteSource) {
    // Answer the primary's requests for activity (before it lists routes) and metrics.
    source.onFlushRequest((id) => {
      forwarder?.sweepWebsocketActivity();
      activity.flush().then(
        () => source.flushActivity(new Map(), id),
        () => source.flushActivity(new Map(), id),
      );
    });
    source.onMetricsRequest((id) => {
      if (prometheus) prometheus.json().then((json) => sendMetrics(id, json));
      else sendMetrics(id, []);
    });
  }

  if (store) {
    const syncActivity = async () => {
      forwarder?.sweepWebsocketActivity();
      await pool?.collectActivity();
      await activity.sync();
    };
    const api = new RoutesApi(options.api, table, store, { sync: syncActivity }, metrics, log);
    if (!options.api.authToken) log.warn('REST API is not authenticated: set CONFIGPROXY_AUTH_TOKEN');
    const onApiRequest = (req: IncomingMessage, res: ServerResponse) => api.handle(req, res);
    const apiServer = options.apiTls
      ? createHttpsServer(options.apiTls, onApiRequest)
      : createHttpServer(onApiRequest);
    track(lifecycle, apiServer);
    addresses.api = await listen(
      apiServer,
      options.apiListen,
      'path' in options.apiListen ? '--api-socket' : '--api-ip/--api-port',
    );
    if (options.metricsListen && prometheus) {
      const workers = pool ? () => pool.collectMetrics() : undefined;
      addresses.metrics = await startMetrics(options.metricsListen, lifecycle, (res) =>
        prometheus.serve(res, workers),
      );
    }
    if (options.pidFile) {
      writeFileSync(options.pidFile, String(process.pid));
      lifecycle.onClose(() => rmSync(options.pidFile!, { force: true }));
    }
  }

  activity.start();
  lifecycle.onClose(() => activity.stop());
  if (pool) {
    pool.start();
    lifecycle.onClose(() => pool.stop(Math.max(1000, options.terminationGracePeriodMs)));
  }
  lifecycle.onClose(() => source.close());

  // Ready once the table holds the store's routes; a Redis store may still be connecting.
  const addDefaultRoute = async () => {
    if (!options.defaultTarget || !store) return;
    await store.set('/', { target: options.defaultTarget });
    log.info({ route: '/', target: options.defaultTarget }, 'route added');
  };
  const storeReady = source.ready().then(addDefaultRoute);
  storeReady.then(
    () => lifecycle.setReady(true),
    (error: unknown) => log.error({ err: (error as Error).message }, 'adding the default route failed'),
  );
  // In-process stores are ready at once: do not return before the default route exists.
  await Promise.race([storeReady, new Promise((resolve) => setImmediate(resolve))]);

  if (addresses.proxy) {
    log.info(
      {
        proxy: `${options.tls ? 'https' : 'http'}://${formatAddress(addresses.proxy)}`,
        defaultTarget: options.defaultTarget ?? null,
      },
      'proxying',
    );
  }
  if (addresses.api) {
    log.info(
      { api: `${options.apiTls ? 'https' : 'http'}://${formatAddress(addresses.api)}/api/routes` },
      'proxy api',
    );
  }
  if (addresses.metrics)
    log.info({ metrics: `http://${formatAddress(addresses.metrics)}/metrics` }, 'serving metrics');
  if (pool) log.info({ workers: options.workers }, 'starting workers');

  return { table, lifecycle, addresses, close: () => lifecycle.shutdown('close') };
}

function track(lifecycle: Lifecycle, server: Server): void {
  server.on('clientError', (_error, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });
  lifecycle.track(server);
}

function tuneServer(server: Server, keepAliveTimeoutMs: number): void {
  server.keepAliveTimeout = keepAliveTimeoutMs;
  // Slow clients get a minute for their headers, but a long upload through the proxy may take
  // as long as it takes (Node would otherwise cut requests at 5 minutes).
  server.headersTimeout = Math.max(60_000, keepAliveTimeoutMs + 1000);
  server.requestTimeout = 0;
}

function startMetrics(
  address: ListenAddress,
  lifecycle: Lifecycle,
  serve: (res: ServerResponse) => void,
): Promise<ListenAddress> {
  const server = createHttpServer((req, res) => {
    if (lifecycle.handleProbe(req, res)) return;
    if (req.url?.split('?', 1)[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('Not Found: metrics are served at /metrics\n');
      return;
    }
    serve(res);
  });
  lifecycle.track(server);
  return listen(server, address, 'path' in address ? '--metrics-socket' : '--metrics-ip/--metrics-port');
}

function startRedirect(options: ProxyOptions, lifecycle: Lifecycle): Promise<ListenAddress> {
  const { port, to } = options.redirect!;
  const server = createHttpServer((req, res) => {
    const host = req.headers.host?.replace(/:\d+$/, '');
    if (!host) {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end(`This server is HTTPS-only on port ${to}; the request named no Host to redirect to.\n`);
      return;
    }
    res.writeHead(301, { location: `https://${host}${to === 443 ? '' : `:${to}`}${req.url ?? '/'}` });
    res.end();
  });
  lifecycle.track(server);
  const host = 'host' in options.listen ? options.listen.host : '';
  return listen(server, { host, port }, '--redirect-port');
}
