// The configured implementations of the hub's pluggable parts: the proxy's REST client and the
// spawner class with its traits bound.
import { StartupError } from '@seahorse/runtime';
import type { HubConfig } from './config.ts';
import type { ProxyApi } from './proxy-api.ts';
import type { ProxyClientOptions } from './server.ts';
import type { BoundSpawnerFactory } from './spawns.ts';

export function proxyClientFactory(_options: ProxyClientOptions): ProxyApi {
  throw new StartupError('the proxy client is not wired in yet');
}

export function spawnerFactoryFor(config: HubConfig): BoundSpawnerFactory {
  throw new StartupError(`spawner class ${config.spawnerClass} is not wired in yet`);
}
