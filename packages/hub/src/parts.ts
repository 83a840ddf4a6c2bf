// The configured implementations of the hub's pluggable parts: the proxy's REST client and the
// spawner class with its traits bound.

import type { Logger } from '@seahorse/runtime';
import type { HubConfig } from './config.ts';
import { chooseProfile } from './profiles.ts';
import type { ProxyApi } from './proxy-api.ts';
import { ProxyClient } from './proxy-client.ts';
import type { ProxyClientOptions } from './server.ts';
import { createDockerSpawner, type DockerSpawnerOptions } from './spawners/docker.ts';
import { DockerClient } from './spawners/docker-client.ts';
import { dockerConnection, engineHostIp } from './spawners/docker-connection.ts';
import { imageForSpawn } from './spawners/docker-options.ts';
import { KubeClient, loadConnection } from './spawners/kube-client.ts';
import { applyKubeOverride, type KubeTraits } from './spawners/kube-objects.ts';
import { createKubeSpawner } from './spawners/kubernetes.ts';
import { createLocalProcessSpawner, type LocalProcessOptions } from './spawners/local-process.ts';
import { PodReflector } from './spawners/pod-reflector.ts';
import type { BoundSpawnerFactory } from './spawns.ts';

export function proxyClientFactory(options: ProxyClientOptions): ProxyApi {
  return new ProxyClient(options);
}

/** The configured spawner class with the Spawner traits bound. */
export function spawnerFactoryFor(
  config: HubConfig,
  log?: Logger,
  env: NodeJS.ProcessEnv = process.env,
): BoundSpawnerFactory {
  if (config.kube) {
    if (!log) throw new Error('the Kubernetes spawner needs the hub’s logger');
    const kube = config.kube;
    const client = new KubeClient(loadConnection(env), {
      requestTimeoutMs: kube.k8s_api_request_timeout * 1000,
      retryTimeoutMs: kube.k8s_api_request_retry_timeout * 1000,
    });
    return kubeSpawnerFactory(
      config,
      { ...kube, namespace: kube.namespace || client.namespace },
      client,
      log,
    );
  }
  if (config.docker) return dockerSpawnerFactory(config, env, log);
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
  if (config.traits['Spawner.debug'] === true) options.debug = true;
  const profiles = spawner.profileList;
  if (profiles.length === 0) return (context) => createLocalProcessSpawner(context, options);
  return (context) => {
    const profile = chooseProfile(profiles, context.spec.userOptions.profile);
    return createLocalProcessSpawner(context, profile ? withOverride(options, profile.override) : options);
  };
}

/** A profile's overrides of the Spawner traits the local spawner knows; the others (image, cpu_limit, …) are KubeSpawner's. */
function withOverride(base: LocalProcessOptions, override: Record<string, unknown>): LocalProcessOptions {
  const options = { ...base };
  const strings = (value: unknown) =>
    Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : undefined;
  for (const [key, value] of Object.entries(override)) {
    if (key === 'cmd' && strings(value)) options.cmd = strings(value)!;
    else if (key === 'cmd' && typeof value === 'string') options.cmd = [value];
    else if (key === 'args' && strings(value)) options.args = strings(value)!;
    else if (key === 'environment' && typeof value === 'object' && value !== null) {
      options.environment = { ...base.environment };
      for (const [name, item] of Object.entries(value)) options.environment[name] = String(item);
    } else if (key === 'default_url' && typeof value === 'string') options.defaultUrl = value;
    else if (key === 'notebook_dir' && typeof value === 'string') options.notebookDir = value;
    else if (key === 'start_timeout' && typeof value === 'number') options.startTimeoutMs = value * 1000;
    else if (key === 'http_timeout' && typeof value === 'number') options.httpTimeoutMs = value * 1000;
  }
  return options;
}

/**
 * KubeSpawner with its traits bound: one API client and one pod watch for every server; the
 * user's profile applies its kubespawner_override.
 */
export function kubeSpawnerFactory(
  config: HubConfig,
  traits: KubeTraits,
  client: KubeClient,
  log: Logger,
): BoundSpawnerFactory {
  const reflector = new PodReflector(client, traits.namespace, traits.component_label, log);
  const shared = { client, reflector };
  const profiles = config.spawner.profileList;
  const factory: BoundSpawnerFactory = (context) => {
    const profile = chooseProfile(profiles, context.spec.userOptions.profile);
    const bound = profile ? applyKubeOverride(traits, profile.override) : traits;
    return createKubeSpawner(context, shared, bound, config.hooks.kube);
  };
  factory.background = {
    start: () => reflector.start(),
    // Idle keep-alive sockets are unreferenced by the agent: nothing to close for the client.
    stop: () => reflector.stop(),
  };
  return factory;
}

/** DockerSpawner with its traits bound: one Engine client (DOCKER_HOST, with its TLS) for every server. */
export function dockerSpawnerFactory(
  config: HubConfig,
  env: NodeJS.ProcessEnv = process.env,
  log?: Logger,
): BoundSpawnerFactory {
  const docker = config.docker;
  if (!docker) throw new Error('dockerSpawnerFactory needs DockerSpawner settings');
  const connection = dockerConnection(env, docker);
  const client = new DockerClient(connection);
  if (connection.tcp && !connection.tcp.tls) {
    // As the docker CLI allows it; whoever reaches the port controls the engine.
    log?.warn(
      { engine: client.address },
      'the Docker Engine is reached over TCP without TLS: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH',
    );
  }
  if (connection.tcp && !docker.hostIpSet && !engineHostIp(connection)) {
    log?.warn(
      { engine: client.address },
      'DOCKER_HOST names the engine by a host name: servers are published on 127.0.0.1 of its host unless DockerSpawner.host_ip is set',
    );
  }
  if (connection.tcp?.tls && !connection.tcp.tls.verify) {
    log?.warn(
      { engine: client.address },
      "the Docker Engine's TLS certificate is not verified: set DOCKER_TLS_VERIFY=1",
    );
  }
  const { spawner } = config;
  const mem = config.traits['Spawner.mem_limit'];
  const cpu = config.traits['Spawner.cpu_limit'];
  const options: DockerSpawnerOptions = {
    ...docker,
    host_ip: docker.hostIpSet ? docker.host_ip : (engineHostIp(connection) ?? docker.host_ip),
    args: spawner.args,
    environment: spawner.environment,
    startTimeoutMs: spawner.startTimeoutMs,
    httpTimeoutMs: spawner.httpTimeoutMs,
    memLimit: typeof mem === 'number' ? mem : null,
    cpuLimit: typeof cpu === 'number' ? cpu : null,
  };
  if (spawner.defaultUrl) options.defaultUrl = spawner.defaultUrl;
  if (spawner.notebookDir) options.notebookDir = spawner.notebookDir;
  if (config.traits['Spawner.debug'] === true) options.debug = true;
  const factory: BoundSpawnerFactory = (context) => createDockerSpawner(context, client, options);
  factory.refusesUserOptions = (userOptions) => {
    const chosen = imageForSpawn(docker, userOptions);
    return 'refused' in chosen ? chosen.refused : undefined;
  };
  return factory;
}
