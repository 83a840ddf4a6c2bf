import { routespecFromChpPath } from './proxy-client.ts';

// What the hub needs of a configurable-http-proxy REST API client (proxy-client.ts is one).
export interface ProxyRoute {
  target: string;
  last_activity?: string;
  [key: string]: unknown;
}

export interface ProxyApi {
  addRoute(path: string, target: string, data: Record<string, unknown>): Promise<void>;
  deleteRoute(path: string): Promise<unknown>;
  getRoutes(inactiveSince?: Date): Promise<Record<string, ProxyRoute>>;
}

export interface HubRoute {
  routespec: string;
  target: string;
  data: Record<string, unknown>;
}

/** The proxy's routes as JupyterHub reports them: only its own, keyed by routespec. */
export function hubRoutes(routes: Record<string, ProxyRoute>): Map<string, HubRoute> {
  const out = new Map<string, HubRoute>();
  for (const [path, route] of Object.entries(routes)) {
    if (!('jupyterhub' in route)) continue;
    const { target, jupyterhub: _, ...data } = route;
    const routespec = routespecFromChpPath(path);
    out.set(routespec, { routespec, target, data });
  }
  return out;
}
