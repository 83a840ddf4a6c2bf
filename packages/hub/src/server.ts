// Wires the hub: database (migrated), configuration reconciled into it, the proxy (started or
// external), the hub's listener, leadership among replicas, and — on the leader only — servers
// re-attached, pending work of dead replicas finished, and the periodic work (route check,
// activity from the proxy, server polls, idle culling). SIGTERM stops servers only when
// cleanup_servers is true and no other replica is running.
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
import { html, sendPage } from './pages/html.ts';
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
    // The configuration's rows (admin and allowed users, services and their tokens, roles) are
    // written under the migration lock too: replicas starting at once on one PostgreSQL write
    // them one after another, where two would both find a user missing and both insert it.
    const created = hub;
    await db.withMigrationLock(() => created.init());
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
      // The path only: a query may carry a token (?token=…), and logs never hold one.
      const path = (req.url ?? '/').split('?')[0];
      log.error({ err: error, method: req.method, path }, 'request failed');
      const unavailable = error instanceof DatabaseUnavailableError;
      const message = unavailable
        ? 'The hub’s database is unavailable; try again in a moment.'
        : 'Something went wrong on the hub.';
      if (res.headersSent) res.destroy();
      else if (path?.startsWith(apiPrefix)) {
        sendError(
          res,
          unavailable ? 503 : 500,
          unavailable ? message.slice(0, -1) : 'Internal Server Error',
          {
            ...(unavailable ? { 'retry-after': '5' } : {}),
          },
        );
      } else {
        // A person in a browser: a page, not JSON.
        sendPage(
          res,
          unavailable ? 503 : 500,
          unavailable ? 'Service unavailable' : 'Something went wrong',
          html`<p class="alert" role="alert">${message}</p>`,
          { base: config.baseUrl },
          unavailable ? { 'retry-after': '5' } : {},
        );
      }
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
      // As JupyterHub's check_routes: the hub's route is added when missing and pointed here when
      // it names another target (the replica that led before, with its own hub_connect_url).
      const hubEntry = routes[config.baseUrl] ?? routes[config.baseUrl.replace(/\/$/, '')];
      if (!hubEntry || hubEntry.target !== config.hubConnectUrl) await hubRoute();
      const wanted = new Map<string, string>();
      // As JupyterHub: the route of a server whose spawn or stop is pending is not stale — a
      // spawn adds its route just before it is marked ready, a stop removes it itself.
      const pending = new Set<string>();
      for (const row of await spawnerDb.activeSpawners(db)) {
        if (row.url && row.ready === 1 && row.pending === null) {
          wanted.set(serverPrefix(config.baseUrl, row.user_name, row.name), row.url);
        } else if (row.pending !== null) {
          pending.add(serverPrefix(config.baseUrl, row.user_name, row.name));
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
        if (
          route.jupyterhub === true &&
          route.user !== undefined &&
          !wanted.has(normalized) &&
          !pending.has(normalized)
        ) {
          log.info({ route: path }, 'removing stale route');
          await proxy.deleteRoute(path);
        }
      }
    } finally {
      end();
    }
  }
  hub.checkRoutes = checkRoutes;
  // What PATCH /hub/api/proxy set last (a later PATCH of the token alone keeps its URL).
  let proxyApiUrl = config.proxy.apiUrl;
  let proxyToken = authToken;
  hub.reconfigureProxy = (apiUrl, token) => {
    const before = { client: proxy.current, apiUrl: proxyApiUrl, token: proxyToken };
    proxy.current = options.proxyClient({
      apiUrl: apiUrl ?? proxyApiUrl,
      authToken: token ?? proxyToken,
      log: proxyLog,
      retryTimeoutMs: 3000,
    });
    proxyApiUrl = apiUrl ?? proxyApiUrl;
    proxyToken = token ?? proxyToken;
    return () => {
      proxy.current = before.client;
      proxyApiUrl = before.apiUrl;
      proxyToken = before.token;
    };
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

  const { leadership } = hub;

  /** Polls the running servers (on the leader); `reattaching` logs each one found alive. */
  async function pollServers(reattaching = false): Promise<void> {
    for (const row of await spawnerDb.activeSpawners(db)) {
      if (!leadership.isLeader) return;
      if (row.pending !== null || row.url === null || hub.spawns.completion(row.id)) continue;
      const user = (await findUserById(db, row.user_id)) as UserRow;
      const status = await hub.spawns.poll(user, row).catch(() => (reattaching ? 0 : null));
      if (status === null && reattaching)
        log.info({ user: row.user_name, server: row.name, url: row.url }, 're-attached to running server');
      else if (status !== null) await hub.spawns.stopped(user, row);
    }
  }

  /**
   * Spawns and stops left pending by a hub process that is gone (this one before a restart, or a
   * replica that died): the leader takes each over in the database, then stops what a spawn had
   * started (from the state saved with its progress) or finishes the stop.
   */
  async function finishOrphans(): Promise<void> {
    const pending = (await spawnerDb.pendingSpawners(db)).filter(
      (row) => row.pending_owner !== hub.spawns.owner,
    );
    const gone = await leadership.goneOwners(pending.map((row) => row.pending_owner));
    for (const row of pending) {
      const owner = row.pending_owner ?? '';
      if (!gone.has(owner) || !leadership.isLeader) continue;
      if (!(await spawnerDb.takeOverPending(db, row.id, row.pending!, owner, hub.spawns.owner))) continue;
      const current = await spawnerDb.findSpawnerById(db, row.id);
      const user = await findUserById(db, row.user_id);
      if (!current || !user) continue;
      const fields = { user: row.user_name, server: row.name, owner: owner || null };
      if (row.pending === 'spawn') {
        log.warn(fields, 'spawn interrupted: the hub process running it is gone; stopping what it started');
        await hub.spawns.abandon(user, current, 'the hub stopped while the server was starting');
      } else {
        log.warn(fields, 'stop interrupted: the hub process running it is gone; finishing it');
        await hub.spawns.stop(user, current, true);
      }
    }
  }

  /** This replica's own spawns and stops whose end a database failure kept from being recorded. */
  async function finishStuck(): Promise<void> {
    for (const row of await spawnerDb.pendingSpawners(db)) {
      if (!hub.spawns.isStuck(row)) continue;
      const user = await findUserById(db, row.user_id);
      if (user) await hub.spawns.recover(user, row);
    }
  }

  /** What a replica does when it becomes the leader, before its periodic work. */
  async function takeOver(reattaching: boolean): Promise<void> {
    await finishOrphans();
    await pollServers(reattaching);
    await checkRoutes();
  }

  // The spawner's shared watch (Kubernetes' pods) runs on the leader only, term by term;
  // re-attached servers are then polled from it.
  const watcher = options.spawnerFactory.background;
  if (watcher) {
    leadership.whileLeader((signal) => {
      watcher.start();
      signal.addEventListener('abort', () => void watcher.stop(), { once: true });
    });
  }
  await leadership.start();
  try {
    // Until then the API answers 503: a lone hub has re-attached to its servers before it serves.
    if (leadership.isLeader) await takeOver(true);
  } catch (error) {
    if (config.proxy.shouldStart) {
      server.close();
      await watcher?.stop();
      await proxyProcess?.stop();
      await leadership.stop();
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
  /** Periodic singleton work: runs on the leader only (unless `everyReplica`), one run at a time. */
  const every = (ms: number, what: string, task: () => Promise<unknown>, everyReplica = false) => {
    if (ms <= 0) return;
    let running = false;
    const timer = setInterval(() => {
      if (running || lifecycle.shuttingDown || (!everyReplica && !leadership.isLeader)) return;
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
  every(config.spawner.pollIntervalMs, 'poll servers', () => pollServers());
  every(3_600_000, 'purge expired tokens', () => deleteExpiredTokens(db));
  every(1000, 'finish the pending work of gone replicas', finishOrphans);
  every(1000, 'finish own pending work a database failure interrupted', finishStuck, true);
  if (config.culler.enabled) {
    const culler = new IdleCuller(hub);
    every(config.culler.cullEveryMs, 'cull idle servers', () => culler.cull(Date.now(), leadership.signal));
  }
  // A replica that becomes the leader later (the leader died or left) catches up at once.
  leadership.on('change', (leader) => {
    if (!leader || lifecycle.shuttingDown) return;
    takeOver(false).catch((error: unknown) => log.warn({ err: error }, 'taking over as the leader failed'));
  });

  // Managed services (a culler, say) are singleton work too: run by the leader, stopped when
  // its term ends, started again by the next leader.
  let managed: ManagedService[] = [];
  leadership.whileLeader((term) => {
    if (lifecycle.shuttingDown) return;
    const started: ManagedService[] = [];
    for (const service of config.services) {
      if (!service.command) continue;
      const running = new ManagedService(
        service,
        serviceEnvironment(config, service, hub.serviceTokens.get(service.name)!),
        log,
      );
      running.start();
      started.push(running);
    }
    managed = started;
    term.addEventListener('abort', () => {
      for (const service of started) void service.stop();
    });
  });

  let stopServers = config.cleanupServers;
  let stopProxy = config.cleanupProxy;
  lifecycle.onClose(async () => {
    for (const timer of timers) clearInterval(timer);
    await Promise.all(managed.map((service) => service.stop()));
    // With other replicas running, the hub goes on: the servers are theirs now.
    let others = 0;
    if (stopServers) {
      others = await leadership.liveReplicas().then(
        (live) => [...live].filter((id) => id !== hub.spawns.owner).length,
        () => 0,
      );
    }
    // Leaving now lets another replica take over the singleton work at its next try.
    await leadership.stop();
    if (stopServers && others > 0) {
      log.info({ replicas: others }, 'leaving servers running: other hub replicas serve them');
    } else if (stopServers) {
      // The database may be down: the proxy and the pool below are still ours to stop.
      try {
        const active = await spawnerDb.activeSpawners(db);
        await Promise.all(
          active.map(async (row) => {
            const user = (await findUserById(db, row.user_id)) as UserRow;
            const ours = row.pending === 'spawn' && row.pending_owner === hub.spawns.owner;
            const running = row.url !== null && row.pending === null;
            if (ours || (running && (await spawnerDb.markStopPending(db, row.id, hub.spawns.owner))))
              await hub.spawns.stop(user, row, false);
          }),
        );
        log.info({ servers: active.length }, 'servers stopped (cleanup_servers)');
      } catch (error) {
        log.error({ err: error }, 'stopping the servers failed; they may still run');
      }
    } else {
      log.info('leaving servers running (cleanup_servers is false)');
    }
    await watcher?.stop();
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
