// What the proxy counts. Nobody can read the counters without a metrics listener, yet keeping
// them costs every request two timers, two observes and two increments, and loading prom-client
// costs a few MB of RSS: without a listener the proxy counts nothing and never loads it (CHP
// likewise swaps in its MockMetrics).
import type { PrometheusMetrics } from './prometheus.ts';

export interface MetricsGauges {
  routes: () => number;
  websockets: () => number;
}

export interface ProxyMetrics {
  /** False for the no-op set: callers skip timing what nobody records. */
  readonly enabled: boolean;
  apiRouteGet(): void;
  apiRouteAdd(): void;
  apiRouteDelete(): void;
  webRequest(): void;
  websocketRequest(): void;
  activityFlushed(seconds: number): void;
  findTarget(seconds: number): void;
  /** A response sent for a proxied request: the target's status or the proxy's own error. */
  proxied(status: number, seconds: number): void;
  api(status: number): void;
}

const ignore = (): void => {};

export const noMetrics: ProxyMetrics = {
  enabled: false,
  apiRouteGet: ignore,
  apiRouteAdd: ignore,
  apiRouteDelete: ignore,
  webRequest: ignore,
  websocketRequest: ignore,
  activityFlushed: ignore,
  findTarget: ignore,
  proxied: ignore,
  api: ignore,
};

/** The Prometheus set, loaded on demand. */
export async function loadPrometheusMetrics(gauges: MetricsGauges): Promise<PrometheusMetrics> {
  const { PrometheusMetrics } = await import('./prometheus.ts');
  return new PrometheusMetrics(gauges);
}
