export { buildConfig, flattenConfig, type HubConfig, loadConfigFile, traits } from './config.ts';
export type { ProxyApi, ProxyRoute } from './proxy-api.ts';
export { type HubServerOptions, type RunningHub, startHub } from './server.ts';
