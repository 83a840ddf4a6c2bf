// The hub's Prometheus metrics, under JupyterHub's names and labels so dashboards carry over.
import { Counter, createRegistry, Gauge, Histogram, type Registry } from '@seahorse/runtime/metrics';

export interface HubMetrics {
  registry: Registry;
  requestDuration: Histogram<'method' | 'handler' | 'code'>;
  spawnDuration: Histogram<'status'>;
  stopDuration: Histogram<'status'>;
  pollDuration: Histogram<'status'>;
  proxyPollDuration: Histogram;
  checkRoutesDuration: Histogram;
  proxyAddDuration: Histogram<'status'>;
  proxyDeleteDuration: Histogram<'status'>;
  startupDuration: Histogram;
  runningServers: Gauge;
  totalUsers: Gauge;
  activeUsers: Gauge<'period'>;
  apiErrors: Counter<'code'>;
}

export function createMetrics(): HubMetrics {
  const registry = createRegistry();
  const spawnBuckets = [0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 180, 300, 600];
  return {
    registry,
    requestDuration: new Histogram({
      name: 'jupyterhub_request_duration_seconds',
      help: 'request duration for all HTTP requests',
      labelNames: ['method', 'handler', 'code'],
      registers: [registry],
    }),
    spawnDuration: new Histogram({
      name: 'jupyterhub_server_spawn_duration_seconds',
      help: 'time taken for server spawning operation',
      labelNames: ['status'],
      buckets: spawnBuckets,
      registers: [registry],
    }),
    stopDuration: new Histogram({
      name: 'jupyterhub_server_stop_seconds',
      help: 'time taken for server stopping operation',
      labelNames: ['status'],
      registers: [registry],
    }),
    pollDuration: new Histogram({
      name: 'jupyterhub_server_poll_duration_seconds',
      help: 'time taken to poll if server is running',
      labelNames: ['status'],
      registers: [registry],
    }),
    proxyPollDuration: new Histogram({
      name: 'jupyterhub_proxy_poll_duration_seconds',
      help: 'duration for polling all routes from proxy',
      registers: [registry],
    }),
    checkRoutesDuration: new Histogram({
      name: 'jupyterhub_check_routes_duration_seconds',
      help: 'Time taken to validate all routes in proxy',
      registers: [registry],
    }),
    proxyAddDuration: new Histogram({
      name: 'jupyterhub_proxy_add_duration_seconds',
      help: 'duration for adding user routes to proxy',
      labelNames: ['status'],
      registers: [registry],
    }),
    proxyDeleteDuration: new Histogram({
      name: 'jupyterhub_proxy_delete_duration_seconds',
      help: 'duration for deleting user routes from proxy',
      labelNames: ['status'],
      registers: [registry],
    }),
    startupDuration: new Histogram({
      name: 'jupyterhub_hub_startup_duration_seconds',
      help: 'Time taken for Hub to start',
      registers: [registry],
    }),
    runningServers: new Gauge({
      name: 'jupyterhub_running_servers',
      help: 'the number of user servers currently running',
      registers: [registry],
    }),
    totalUsers: new Gauge({
      name: 'jupyterhub_total_users',
      help: 'total number of users',
      registers: [registry],
    }),
    activeUsers: new Gauge({
      name: 'jupyterhub_active_users',
      help: 'number of users who were active in the given time period',
      labelNames: ['period'],
      registers: [registry],
    }),
    apiErrors: new Counter({
      name: 'seahorse_hub_api_errors_total',
      help: 'API answers with a status of 400 or above, by status',
      labelNames: ['code'],
      registers: [registry],
    }),
  };
}
