// One Prometheus registry per process, with the process and Node default metrics.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { collectDefaultMetrics, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';

export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Serves the registry in the Prometheus text format. */
export function serveMetrics(registry: Registry, res: ServerResponse): void {
  registry.metrics().then(
    (body) => {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(body);
    },
    (error: unknown) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`collecting metrics failed: ${(error as Error).message}\n`);
    },
  );
}

/** A handler for a dedicated metrics listener: `/metrics` (and `/` for convenience). */
export function metricsListener(registry: Registry) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url?.split('?')[0];
    if (req.method === 'GET' && (path === '/metrics' || path === '/')) {
      serveMetrics(registry, res);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: metrics are served at /metrics\n');
  };
}
