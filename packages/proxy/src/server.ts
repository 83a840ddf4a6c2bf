// Wires the proxy together: route store → table → forwarder, the REST API as one more writer,
// and the listeners (proxy, API, metrics, HTTP→HTTPS redirect) with their lifecycle.
import { rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as TlsServerOptions } from 'node:https';
import {
  createRegistry,
  formatAddress,
  Lifecycle,
  type ListenAddress,
  type Logger,
  listen,
  type Registry,
  serveMetrics,
} from '@seahorse/runtime';
import { ActivityFlusher } from './activity.ts';
import { type ApiOptions, RoutesApi } from './api.ts';
import { ErrorPages } from './error-pages.ts';
import { Forwarder, type ForwardOptions } from './forward.ts';
import { ProxyMetrics } from './metrics.ts';
import { RouteTable } from './routes.ts';
import type { RouteStore } from './store.ts';

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
  activityFlushMs: number;
  lameduckMs: number;
  terminationGracePeriodMs: number;
  api: ApiOptions;
  forward: Omit<ForwardOptions, 'listenerSecure'>;
}

export interface RunningProxy {
  readonly table: RouteTable;
  readonly registry: Registry;
  readonly lifecycle: Lifecycle;
  /** Where each listener ended up (port 0 becomes the port chosen). */
  readonly addresses: {
    proxy: ListenAddress;
    api: ListenAddress;
    metrics?: ListenAddress;
    redirect?: ListenAddress;
  };
  /** Drains and stops everything; the same promise on every call. */
  close(): Promise<void>;
}

const healthPath = '/_chp_healthz';

export async function startProxy(
  options: ProxyOptions,
  store: RouteStore,
  log: Logger,
): Promise<RunningProxy> {
  const lifecycle = new Lifecycle({
    logger: log,
    lameduckMs: options.lameduckMs,
    terminationGracePeriodMs: options.terminationGracePeriodMs,
  });
  const table = new RouteTable();
  const registry = createRegistry();
  let forwarder: Forwarder | undefined;
  const metrics = new ProxyMetrics(registry, {
    routes: () => table.size,
    websockets: () => forwarder?.websocketCount ?? 0,
  });
  const errors = new ErrorPages(
    { errorTarget: options.errorTarget, errorPath: options.errorPath, clientTls: options.forward.clientTls },
    log,
  );
  forwarder = new Forwarder(
    { ...options.forward, listenerSecure: options.tls !== undefined },
    table,
    metrics,
    errors,
    log,
  );
  const proxyForwarder = forwarder;
  const activity = new ActivityFlusher(table, store, metrics, log, options.activityFlushMs);
  const api = new RoutesApi(options.api, table, store, activity, metrics, log);

  await store.start(table);
  const addDefaultRoute = async () => {
    if (!options.defaultTarget) return;
    await store.ready();
    await store.set('/', { target: options.defaultTarget });
    log.info({ route: '/', target: options.defaultTarget }, 'route added');
  };
  if (!options.api.authToken) log.warn('REST API is not authenticated: set CONFIGPROXY_AUTH_TOKEN');

  const onProxyRequest = (req: IncomingMessage, res: ServerResponse) => {
    // The probe answers for the proxy itself: exact URL only, as CHP; unready while draining.
    if (req.url === healthPath) {
      const ready = lifecycle.ready;
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
      res.end(
        ready
          ? '{"status":"OK"}'
          : JSON.stringify({
              status: 'not ready',
              reason: lifecycle.shuttingDown ? 'shutting down' : `route store: ${store.status}`,
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

  const onApiRequest = (req: IncomingMessage, res: ServerResponse) => api.handle(req, res);
  const apiServer = options.apiTls
    ? createHttpsServer(options.apiTls, onApiRequest)
    : createHttpServer(onApiRequest);
  for (const server of [proxyServer, apiServer]) {
    server.on('clientError', (_error, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    lifecycle.track(server);
  }

  const addresses: {
    proxy: ListenAddress;
    api: ListenAddress;
    metrics?: ListenAddress;
    redirect?: ListenAddress;
  } = {
    proxy: await listen(proxyServer, options.listen, 'path' in options.listen ? '--socket' : '--ip/--port'),
    api: await listen(
      apiServer,
      options.apiListen,
      'path' in options.apiListen ? '--api-socket' : '--api-ip/--api-port',
    ),
  };

  if (options.metricsListen) {
    const metricsServer = createHttpServer((req, res) => {
      if (lifecycle.handleProbe(req, res)) return;
      if (req.url?.split('?', 1)[0] === '/metrics') serveMetrics(registry, res);
      else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('Not Found: metrics are served at /metrics\n');
      }
    });
    lifecycle.track(metricsServer);
    addresses.metrics = await listen(
      metricsServer,
      options.metricsListen,
      'path' in options.metricsListen ? '--metrics-socket' : '--metrics-ip/--metrics-port',
    );
  }

  if (options.redirect) {
    const { to } = options.redirect;
    const redirectServer = createHttpServer((req, res) => {
      const host = req.headers.host?.replace(/:\d+$/, '');
      if (!host) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(`This server is HTTPS-only on port ${to}; the request named no Host to redirect to.\n`);
        return;
      }
      res.writeHead(301, { location: `https://${host}${to === 443 ? '' : `:${to}`}${req.url ?? '/'}` });
      res.end();
    });
    lifecycle.track(redirectServer);
    const host = 'host' in options.listen ? options.listen.host : '';
    addresses.redirect = await listen(
      redirectServer,
      { host, port: options.redirect.port },
      '--redirect-port',
    );
  }

  if (options.pidFile) {
    writeFileSync(options.pidFile, String(process.pid));
    lifecycle.onClose(() => rmSync(options.pidFile!, { force: true }));
  }
  activity.start();
  lifecycle.onDrain(() => proxyForwarder.closeWebsockets());
  lifecycle.onClose(() => activity.stop());
  lifecycle.onClose(() => proxyForwarder.close());
  lifecycle.onClose(() => store.close());
  // Ready once the table holds the store's routes; a Redis store may still be connecting.
  const storeReady = store.ready().then(addDefaultRoute);
  storeReady.then(
    () => lifecycle.setReady(true),
    (error: unknown) => log.error({ err: (error as Error).message }, 'adding the default route failed'),
  );
  // In-process stores are ready at once: do not return before the default route exists.
  await Promise.race([storeReady, new Promise((resolve) => setImmediate(resolve))]);

  const scheme = options.tls ? 'https' : 'http';
  log.info(
    { proxy: `${scheme}://${formatAddress(addresses.proxy)}`, defaultTarget: options.defaultTarget ?? null },
    'proxying',
  );
  log.info(
    { api: `${options.apiTls ? 'https' : 'http'}://${formatAddress(addresses.api)}/api/routes` },
    'proxy api',
  );
  if (addresses.metrics)
    log.info({ metrics: `http://${formatAddress(addresses.metrics)}/metrics` }, 'serving metrics');

  return { table, registry, lifecycle, addresses, close: () => lifecycle.shutdown('close') };
}

function tuneServer(server: Server, keepAliveTimeoutMs: number): void {
  server.keepAliveTimeout = keepAliveTimeoutMs;
  // Slow clients get a minute for their headers, but a long upload through the proxy may take
  // as long as it takes (Node would otherwise cut requests at 5 minutes).
  server.headersTimeout = Math.max(60_000, keepAliveTimeoutMs + 1000);
  server.requestTimeout = 0;
}
