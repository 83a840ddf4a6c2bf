// What the hub needs of a configurable-http-proxy REST API client (proxy-client.ts is one).
export interface ProxyRoute {
  target: string;
  last_activity?: string;
  [key: string]: unknown;
}

export interface ProxyApi {
  addRoute(path: string, target: string, data: Record<string, unknown>): Promise<void>;
  deleteRoute(path: string): Promise<void>;
  getRoutes(inactiveSince?: Date): Promise<Record<string, ProxyRoute>>;
}
