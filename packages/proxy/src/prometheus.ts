// The proxy's Prometheus metrics: CHP's names first (dashboards built for CHP keep working),
// then ours. Label values are status codes only, so cardinality stays bounded. Loaded only when
// a metrics listener is configured (see metrics.ts).
import type { ServerResponse } from 'node:http';
import {
  Counter,
  createRegistry,
  Gauge,
  Histogram,
  type Registry,
  Summary,
  serveMetrics,
} from '@seahorse/runtime/metrics';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { MetricsGauges, ProxyMetrics } from './metrics.ts';

const percentiles = [0.01, 0.05, 0.5, 0.9, 0.95, 0.99, 0.999];

export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

export class PrometheusMetrics implements ProxyMetrics {
  readonly enabled = true;
  readonly registry: Registry = createRegistry();
  readonly #apiRouteGet: Counter;
  readonly #apiRouteAdd: Counter;
  readonly #apiRouteDelete: Counter;
  readonly #webRequests: Counter;
  readonly #websocketRequests: Counter;
  readonly #lastActivityUpdating: Summary;
  readonly #findTarget: Summary;
  readonly #proxyRequests: Counter;
  readonly #apiRequests: Counter;
  readonly #duration: Histogram;
  // Children bound per status code: a labelled inc() would hash the labels on every request.
  readonly #proxyByStatus = new Map<number, Counter.Internal>();
  readonly #apiByStatus = new Map<number, Counter.Internal>();

  constructor(gauges: MetricsGauges) {
    const registers = [this.registry];
    this.#apiRouteGet = new Counter({
      name: 'api_route_get',
      help: 'Count of API route get requests',
      registers,
    });
    this.#apiRouteAdd = new Counter({
      name: 'api_route_add',
      help: 'Count of API route add requests',
      registers,
    });
    this.#apiRouteDelete = new Counter({
      name: 'api_route_delete',
      help: 'Count of API route delete requests',
      registers,
    });
    this.#findTarget = new Summary({
      name: 'find_target_for_req',
      help: 'Summary of find target requests',
      percentiles,
      registers,
    });
    this.#lastActivityUpdating = new Summary({
      name: 'last_activity_updating',
      help: 'Summary of last activity updating requests',
      percentiles,
      registers,
    });
    this.#websocketRequests = new Counter({
      name: 'requests_ws',
      help: 'Count of websocket requests',
      registers,
    });
    this.#webRequests = new Counter({ name: 'requests_web', help: 'Count of web requests', registers });
    this.#proxyRequests = new Counter({
      name: 'requests_proxy',
      help: 'Count of proxy requests',
      labelNames: ['status'],
      registers,
    });
    this.#apiRequests = new Counter({
      name: 'requests_api',
      help: 'Count of API requests',
      labelNames: ['status'],
      registers,
    });
    this.#duration = new Histogram({
      name: 'seahorse_proxy_request_duration_seconds',
      help: 'Time from receiving a proxied request to the end of its response',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: 'seahorse_proxy_routes',
      help: 'Routes in the local routing table',
      registers,
      collect() {
        this.set(gauges.routes());
      },
    });
    new Gauge({
      name: 'seahorse_proxy_websockets_open',
      help: 'Websocket connections open through the proxy',
      registers,
      collect() {
        this.set(gauges.websockets());
      },
    });
  }

  apiRouteGet(): void {
    this.#apiRouteGet.inc();
  }

  apiRouteAdd(): void {
    this.#apiRouteAdd.inc();
  }

  apiRouteDelete(): void {
    this.#apiRouteDelete.inc();
  }

  webRequest(): void {
    this.#webRequests.inc();
  }

  websocketRequest(): void {
    this.#websocketRequests.inc();
  }

  activityFlushed(seconds: number): void {
    this.#lastActivityUpdating.observe(seconds);
  }

  findTarget(seconds: number): void {
    this.#findTarget.observe(seconds);
  }

  /** A response sent for a proxied request: the target's status or the proxy's own error. */
  proxied(status: number, seconds: number): void {
    let child = this.#proxyByStatus.get(status);
    if (!child) {
      child = this.#proxyRequests.labels(String(status));
      this.#proxyByStatus.set(status, child);
    }
    child.inc();
    if (seconds > 0) this.#duration.observe(seconds);
  }

  api(status: number): void {
    let child = this.#apiByStatus.get(status);
    if (!child) {
      child = this.#apiRequests.labels(String(status));
      this.#apiByStatus.set(status, child);
    }
    child.inc();
  }

  /** This process's metrics, for the primary to aggregate (`--workers`). */
  json(): Promise<MetricsJson> {
    return this.registry.getMetricsAsJSON();
  }

  /** Answers a scrape; with `workers` (the primary of `--workers`), merged with theirs. */
  serve(res: ServerResponse, workers?: () => Promise<MetricsJson[]>): void {
    if (!workers) {
      serveMetrics(this.registry, res);
      return;
    }
    Promise.all([this.json(), workers()]).then(
      ([own, theirs]) => serveMetrics(AggregatorRegistry.aggregate([own, ...theirs]) as Registry, res),
      (error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`collecting metrics failed: ${(error as Error).message}\n`);
      },
    );
  }
}
