// The configured implementations of the hub's pluggable parts: the proxy's REST client and the
// spawner class with its traits bound.

import type { HubConfig } from './config.ts';
import type { ProxyApi } from './proxy-api.ts';
import { ProxyClient } from './proxy-client.ts';
import type { ProxyClientOptions } from './server.ts';
import { createLocalProcessSpawner, type LocalProcessOptions } from './spawners/local-process.ts';
import type { BoundSpawnerFactory } from './spawns.ts';

export function proxyClientFactory(options: ProxyClientOptions): ProxyApi {
  return new ProxyClient(options);
}

/** The configured spawner class with the Spawner traits bound (only localprocess for now). */
export function spawnerFactoryFor(config: HubConfig): BoundSpawnerFactory {
  const { spawner } = config;
  const options: LocalProcessOptions = {
    cmd: spawner.cmd,
    args: spawner.args,
    environment: spawner.environment,
    startTimeoutMs: spawner.startTimeoutMs,
    httpTimeoutMs: spawner.httpTimeoutMs,
    pollIntervalMs: spawner.pollIntervalMs,
    ip: spawner.ip,
  };
  if (spawner.defaultUrl) options.defaultUrl = spawner.defaultUrl;
  if (spawner.notebookDir) options.notebookDir = spawner.notebookDir;
  return (context) => createLocalProcessSpawner(context, options);
}
