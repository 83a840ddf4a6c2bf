// Programmatic use: start a proxy in-process (tests, embedding), or reuse its parts.
export { type ApiOptions, RoutesApi } from './api.ts';
export * from './errors.ts';
export { Forwarder, type ForwardOptions } from './forward.ts';
export { buildOptions, flagSpecs, type ProxyFlags, version } from './options.ts';
export { legacyRoutesKey, RedisRouteStore, type RedisStoreOptions } from './redis-store.ts';
export { normalizePath, parseTarget, type Route, type RouteData, RouteTable } from './routes.ts';
export { type ProxyOptions, type RunningProxy, startProxy } from './server.ts';
export {
  ChpModuleRouteStore,
  MemoryRouteStore,
  openRouteStore,
  type RouteSource,
  type RouteStore,
  type RouteWriter,
  type StoreOptions,
} from './store.ts';
