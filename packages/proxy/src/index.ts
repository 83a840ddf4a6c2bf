// Programmatic use: start a proxy in-process (tests, embedding), or reuse its parts.
export { type ApiOptions, RoutesApi, StoreUnavailableError } from './api.ts';
export { Forwarder, type ForwardOptions } from './forward.ts';
export { buildOptions, createStore, flagSpecs, version } from './options.ts';
export { normalizePath, parseTarget, type Route, type RouteData, RouteTable } from './routes.ts';
export { type ProxyOptions, type RunningProxy, startProxy } from './server.ts';
export { ChpModuleRouteStore, MemoryRouteStore, type RouteStore } from './store.ts';
