// Wires the hub: database (migrated), configuration reconciled into it, the proxy (started or
// external), the hub's listener, servers re-attached after a restart, and the periodic work
// (route check, activity from the proxy, server polls). SIGTERM stops servers only when
// cleanup_servers is true.
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Lifecycle, type Logger, listen } from '@seahorse/runtime';
import { sendError } from './api/http.ts';
import { createApiHandler } from './api/index.ts';
import { allows } from './auth/scopes.ts';
import type { HubConfig } from './config.ts';
import { IdleCuller } from './culler.ts';
import type { Database } from './db/database.ts';
import { migrate } from './db/migrations.ts';
import { openDatabase } from './db/open.ts';
import type { UserRow } from './db/rows.ts';
import * as spawnerDb from './db/spawners.ts';
import { deleteExpiredTokens, getOrCreateSecret } from './db/tokens.ts';
import { countUsers, findUserById, touchUser } from './db/users.ts';
import { ConfigError, DatabaseUnavailableError } from './errors.ts';
import { Hub } from './hub.ts';
import { createMetrics } from './metrics.ts';
import { handlePage } from './pages/index.ts';
import type { ProxyApi } from './proxy-api.ts';
import { ProxyProcess } from './proxy-process.ts';
import { ManagedService, serviceEnvironment } from './services.ts';
import { type BoundSpawnerFactory, serverPrefix } from './spawns.ts';

export interface ProxyClientOptions {
  apiUrl: string;
  authToken: string;
  timeoutMs?: number;
  /** How long failed calls are retried; 0 for a probe that must answer at once. */
  retryTimeoutMs?: number;
  log?: Logger;
}

export interface HubServerOptions {
  config: HubConfig;
  log: Logger;
  /** Builds the client of the proxy's REST API. */
  proxyClient: (options: ProxyClientOptions) => ProxyApi;
  /** Builds spawners of the configured class. */
  spawnerFactory: BoundSpawnerFactory;
  /** Install SIGTERM/SIGINT handlers (the bin does; tests do not). */
  signals?: boolean;
}

export interface RunningHub {
  hub: Hub;
  db: Database;
  address: { host: string; port: number };
  proxyProcess: ProxyProcess | undefined;
  lifecycle: Lifecycle;
  /** Stops as SIGTERM does. */
  stop(reason?: string): Promise<void>;
}

/** A proxy client whose target can be changed at run time (PATCH /hub/api/proxy). */
class SwitchableProxy implements ProxyApi {
  current: ProxyApi;
  constructor(current: ProxyApi) {
    this.current = current;
  }
  addRoute(path: string, target: string, data: Record<string, unknown>) {
    return this.current.addRoute(path, target, data);
  }
  deleteRoute(path: string): Promise<unknown> {
    return this.current.deleteRoute(path);
  }
  getRoutes(inactiveSince?: Date) {
    return this.current.getRoutes(inactiveSince);
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Stops a process the hub started in an earlier life (the proxy it adopted): TERM, then KILL. */
async function stopPid(pid: number, graceMs = 5000): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  if (alive()) process.kill(pid, 'SIGKILL');
}

export async function startHub(options: HubServerOptions): Promise<RunningHub> {
  const { config, log } = options;
  const began = performance.now();
  const lifecycle = new Lifecycle({ logger: log, lameduckMs: 0, terminationGracePeriodMs: 30_000 });
  if (options.signals) lifecycle.installSignalHandlers();
  const db = await openDatabase(config.dbUrl);
  const applied = await migrate(db);
  if (applied.length) log.info({ db: db.description, migrations: applied }, 'database migrated');

  let authToken = config.proxy.authToken;
  if (!authToken) {
    if (!config.proxy.shouldStart) {
      throw new ConfigError(
        'ConfigurableHTTPProxy.should_start is false: set CONFIGPROXY_AUTH_TOKEN (or ConfigurableHTTPProxy.auth_token) to the external proxy’s API token',
      );
    }
    // Kept in the database: a hub restarted after a crash finds the proxy it started still
    // running, and can still talk to it.
    authToken = await getOrCreateSecret(db, 'proxy_auth_token', () => randomBytes(32).toString('hex'));
  }
  const proxyLog = log.child({ component: 'proxy-client' });
  const proxy = new SwitchableProxy(
    options.proxyClient({ apiUrl: config.proxy.apiUrl, authToken, log: proxyLog }),
  );
  const metrics = createMetrics();
  let hub: Hub;
  try {
    hub = new Hub(config, db, log, metrics, proxy, options.spawnerFactory);
    await hub.init();
  } catch (error) {
    await db.close();
    throw error;
  }

  const api = createApiHandler(hub);
  const apiPrefix = `${config.baseUrl}hub/api`;
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://hub.invalid');
    } catch {
      sendError(res, 400, 'Malformed request URL');
      return;
    }
    const path = url.pathname;
    if (!lifecycle.ready && !lifecycle.shuttingDown && path !== `${config.baseUrl}hub/health`) {
      // Until servers are re-attached and routes checked, nothing may start or stop a server.
      sendError(res, 503, 'The hub is starting; try again in a moment', { 'retry-after': '1' });
      return;
    }
    if (path === apiPrefix || path.startsWith(`${apiPrefix}/`)) {
      await api(req, res, url);
      return;
    }
    if (path === `${config.baseUrl}hub/health`) {
      const status = lifecycle.shuttingDown ? 'shutting down' : lifecycle.ready ? 'ok' : 'starting';
      res.writeHead(status === 'ok' ? 200 : 503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status }));
      return;
    }
    if (path === `${config.baseUrl}hub/metrics`) {
      if (config.authenticatePrometheus) {
        const identity = await hub.identity.fromRequest(req, url.searchParams);
        if (!identity || !(await allows(identity.parsed, 'read:metrics'))) {
          sendError(res, 403, 'Action is not authorized with current scopes; requires any of [read:metrics]');
          return;
        }
      }
      await refreshGauges();
      const body = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(body);
      return;
    }
    if (await handlePage(hub, req, res, url)) return;
    sendError(res, 404, 'Not Found');
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      log.error({ err: error, path: req.url }, 'request failed');
      if (error instanceof DatabaseUnavailableError)
        sendError(res, 503, 'The hub’s database is unavailable; try again in a moment', {
          'retry-after': '5',
        });
      else sendError(res, 500, 'Internal Server Error');
    });
  });
  server.keepAliveTimeout = 65_000;
  lifecycle.track(server);
  const bound = (await listen(server, config.hubBind, 'JupyterHub.hub_bind_url')) as {
    host: string;
    port: number;
  };
  // Port 0 (tests): servers and the proxy must reach the port the kernel chose.
  if (config.hubBind.port === 0) config.hubConnectUrl = config.hubConnectUrl.replace(/:0$/, `:${bound.port}`);

  let proxyProcess: ProxyProcess | undefined;
  const probe = options.proxyClient({
    apiUrl: config.proxy.apiUrl,
    authToken,
    retryTimeoutMs: 0,
    timeoutMs: 2000,
  });
  const proxyAnswers = await probe.getRoutes().then(
    () => true,
    () => false,
  );
  let adoptedProxyPid: number | undefined;
  if (config.proxy.shouldStart && proxyAnswers) {
    adoptedProxyPid = readPid(config.proxy.pidFile);
    log.info(
      { api: config.proxy.apiUrl, pid: adoptedProxyPid },
      'found the proxy of an earlier hub still running; using it',
    );
  } else if (config.proxy.shouldStart) {
    proxyProcess = new ProxyProcess(config, authToken, log);
    await proxyProcess.untilReady(async () => {
      await probe.getRoutes();
      return true;
    });
    log.info(
      { pid: proxyProcess.pid, api: config.proxy.apiUrl, public: config.bindUrl.href },
      'proxy started',
    );
    if (config.proxy.pidFile && proxyProcess.pid)
      writeFileSync(config.proxy.pidFile, `${proxyProcess.pid}\n`);
  }

  const hubRoute = () =>
    proxy.addRoute(config.baseUrl, config.hubConnectUrl, { hub: true, jupyterhub: true });

  async function refreshGauges() {
    metrics.totalUsers.set(await countUsers(db));
    metrics.runningServers.set((await spawnerDb.countActive(db)).running);
    const now = Date.now();
    for (const [period, days] of [
      ['24h', 1],
      ['7d', 7],
      ['30d', 30],
    ] as const) {
      const since = new Date(now - days * 86_400_000).toISOString();
      const row = await db.get<{ n: number }>('SELECT COUNT(*) AS n FROM users WHERE last_activity >= ?', [
        since,
      ]);
      metrics.activeUsers.labels(period).set(row?.n ?? 0);
    }
  }

  /** Makes the proxy's table match the database: missing routes added, stale ones removed. */
  async function checkRoutes(): Promise<void> {
    const end = metrics.checkRoutesDuration.startTimer();
    try {
      const routes = await proxy.getRoutes();
      if (!routes[config.baseUrl] && !routes[config.baseUrl.replace(/\/$/, '')]) await hubRoute();
      const wanted = new Map<string, string>();
      for (const row of await spawnerDb.activeSpawners(db)) {
        if (row.url && row.ready === 1 && row.pending === null) {
          wanted.set(serverPrefix(config.baseUrl, row.user_name, row.name), row.url);
        }
      }
      for (const service of config.services) {
        if (!service.url) continue;
        const path = `${config.baseUrl}services/${service.name}/`;
        const route = routes[path] ?? routes[path.replace(/\/$/, '')];
        if (!route || route.target !== service.url) {
          await proxy.addRoute(path, service.url, { service: service.name, jupyterhub: true });
        }
      }
      for (const [path, target] of wanted) {
        const route = routes[path] ?? routes[path.replace(/\/$/, '')];
        if (!route || route.target !== target) {
          const row = [...(await spawnerDb.activeSpawners(db))].find(
            (s) => serverPrefix(config.baseUrl, s.user_name, s.name) === path,
          );
          log.info({ route: path, target }, 'adding missing route');
          await proxy.addRoute(path, target, {
            user: row?.user_name,
            server_name: row?.name ?? '',
            jupyterhub: true,
          });
        }
      }
      for (const [path, route] of Object.entries(routes)) {
        const normalized = path.endsWith('/') ? path : `${path}/`;
        if (route.jupyterhub === true && route.user !== undefined && !wanted.has(normalized)) {
          log.info({ route: path }, 'removing stale route');
          await proxy.deleteRoute(path);
        }
      }
    } finally {
      end();
    }
  }
  hub.checkRoutes = checkRoutes;
  hub.reconfigureProxy = (apiUrl, token) => {
    proxy.current = options.proxyClient({
      apiUrl: apiUrl ?? config.proxy.apiUrl,
      authToken: token ?? authToken,
    });
  };

  /** Reads last activity from the proxy into users and servers, as JupyterHub's update_last_activity. */
  async function activityFromProxy(): Promise<void> {
    const end = metrics.proxyPollDuration.startTimer();
    const routes = await proxy.getRoutes();
    end();
    const byPath = new Map(
      (await spawnerDb.activeSpawners(db)).map((s) => [serverPrefix(config.baseUrl, s.user_name, s.name), s]),
    );
    for (const [path, route] of Object.entries(routes)) {
      if (!route.last_activity || route.jupyterhub !== true) continue;
      const row = byPath.get(path.endsWith('/') ? path : `${path}/`);
      if (!row) continue;
      const when = new Date(route.last_activity).toISOString();
      await touchUser(db, row.user_id, when);
      await spawnerDb.touchSpawner(db, row.id, when);
    }
  }

  async function pollServers(): Promise<void> {
    for (const row of await spawnerDb.activeSpawners(db)) {
      if (row.pending !== null || row.url === null || hub.spawns.completion(row.id)) continue;
      const user = (await findUserById(db, row.user_id)) as UserRow;
      const status = await hub.spawns.poll(user, row).catch(() => null);
      if (status !== null) await hub.spawns.stopped(user, row);
    }
  }

  /** After a restart: servers still running are kept (and routed), the rest cleared. */
  async function reattach(): Promise<void> {
    for (const row of await spawnerDb.activeSpawners(db)) {
      const user = (await findUserById(db, row.user_id)) as UserRow;
      if (row.pending === 'spawn') {
        log.warn({ user: row.user_name, server: row.name }, 'spawn interrupted by a hub restart');
        await hub.spawns.stop(user, row, true).catch(() => undefined);
        await spawnerDb.markFailed(db, row.id, 'the hub restarted while the server was starting', row.state);
        continue;
      }
      if (row.pending === 'stop') {
        await hub.spawns.stop(user, row, true);
        continue;
      }
      const status = await hub.spawns.poll(user, row).catch(() => 0);
      if (status === null)
        log.info({ user: row.user_name, server: row.name, url: row.url }, 're-attached to running server');
      else await hub.spawns.stopped(user, row);
    }
  }

  // The shared pod watch first: re-attached servers are then polled from it.
  options.spawnerFactory.background?.start();
  try {
    await reattach();
    await checkRoutes();
  } catch (error) {
    if (config.proxy.shouldStart) {
      server.close();
      await options.spawnerFactory.background?.stop();
      await proxyProcess?.stop();
      await db.close();
      throw error;
    }
    // An external proxy may come later: the periodic route check fills it then.
    log.warn(
      { err: error, api: config.proxy.apiUrl },
      'the proxy is not reachable yet; routes are added once it is',
    );
  }
  await refreshGauges();

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, what: string, task: () => Promise<unknown>) => {
    if (ms <= 0) return;
    let running = false;
    const timer = setInterval(() => {
      if (running || lifecycle.shuttingDown) return;
      running = true;
      task()
        .catch((error: unknown) => log.warn({ err: error, task: what }, 'periodic task failed'))
        .finally(() => {
          running = false;
        });
    }, ms);
    timer.unref();
    timers.push(timer);
  };
  every(config.proxy.checkIntervalMs, 'check routes', checkRoutes);
  every(config.lastActivityIntervalMs, 'activity from proxy', activityFromProxy);
  every(config.spawner.pollIntervalMs, 'poll servers', pollServers);
  every(3_600_000, 'purge expired tokens', () => deleteExpiredTokens(db));
  if (config.culler.enabled) {
    const culler = new IdleCuller(hub);
    every(config.culler.cullEveryMs, 'cull idle servers', () => culler.cull());
  }

  const managed: ManagedService[] = [];
  for (const service of config.services) {
    if (!service.command) continue;
    const running = new ManagedService(
      service,
      serviceEnvironment(config, service, hub.serviceTokens.get(service.name)!),
      log,
    );
    running.start();
    managed.push(running);
  }

  let stopServers = config.cleanupServers;
  let stopProxy = config.cleanupProxy;
  lifecycle.onClose(async () => {
    for (const timer of timers) clearInterval(timer);
    await Promise.all(managed.map((service) => service.stop()));
    const background = options.spawnerFactory.background;
    if (stopServers) {
      // The database may be down: the proxy and the pool below are still ours to stop.
      try {
        const active = await spawnerDb.activeSpawners(db);
        await Promise.all(
          active.map(async (row) => {
            const user = (await findUserById(db, row.user_id)) as UserRow;
            if (row.url !== null || row.pending === 'spawn') await hub.spawns.stop(user, row, false);
          }),
        );
        log.info({ servers: active.length }, 'servers stopped (cleanup_servers)');
      } catch (error) {
        log.error({ err: error }, 'stopping the servers failed; they may still run');
      }
    } else {
      log.info('leaving servers running (cleanup_servers is false)');
    }
    await background?.stop();
    if (proxyProcess && stopProxy) await proxyProcess.stop();
    if (adoptedProxyPid && stopProxy) await stopPid(adoptedProxyPid);
    if (stopProxy && config.proxy.pidFile) rmSync(config.proxy.pidFile, { force: true });
    await db.close();
  });
  hub.onShutdown = ({ servers, proxy: withProxy }) => {
    stopServers = servers;
    stopProxy = withProxy;
    void lifecycle.shutdown('api').then(() => {
      if (options.signals) process.exit(0);
    });
  };
  lifecycle.setReady(true);
  metrics.startupDuration.observe((performance.now() - began) / 1000);
  log.info(
    {
      hub: `${bound.host || '*'}:${bound.port}`,
      db: db.description,
      proxy: config.proxy.apiUrl,
      public: config.bindUrl.href,
    },
    'hub started',
  );
  return {
    hub,
    db,
    address: bound,
    proxyProcess,
    lifecycle,
    stop: (reason = 'stop') => lifecycle.shutdown(reason),
  };
}
