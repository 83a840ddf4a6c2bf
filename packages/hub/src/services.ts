// Managed services: JupyterHub.services entries with a `command` (e.g. jupyterhub-idle-culler)
// run as children of the hub with JupyterHub's service environment, restarted with a backoff
// when they exit, stopped with the hub. Services with a `url` get a proxy route.
import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from '@seahorse/runtime';
import type { HubConfig, ServiceConfig } from './config.ts';
import { defaultEnvKeep } from './spawners/environment.ts';

export function serviceEnvironment(
  config: HubConfig,
  service: ServiceConfig,
  apiToken: string,
): Record<string, string> {
  const prefix = `${config.baseUrl}services/${service.name}/`;
  const env: Record<string, string> = {
    JUPYTERHUB_SERVICE_NAME: service.name,
    JUPYTERHUB_API_TOKEN: apiToken,
    JUPYTERHUB_CLIENT_ID: service.oauthClientId ?? `service-${service.name}`,
    JUPYTERHUB_HOST: '',
    JUPYTERHUB_OAUTH_CALLBACK_URL: `${prefix}oauth_callback`,
    JUPYTERHUB_API_URL: `${config.hubConnectUrl}${config.baseUrl}hub/api`,
    JUPYTERHUB_BASE_URL: config.baseUrl,
    JUPYTERHUB_SERVICE_PREFIX: prefix,
  };
  if (service.url) env.JUPYTERHUB_SERVICE_URL = service.url;
  return env;
}

export class ManagedService {
  readonly #service: ServiceConfig;
  readonly #env: Record<string, string>;
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  #stopping = false;
  #restarts = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(service: ServiceConfig, env: Record<string, string>, log: Logger) {
    this.#service = service;
    this.#env = env;
    this.#log = log.child({ service: service.name });
  }

  start(): void {
    const [command, ...args] = this.#service.command as [string, ...string[]];
    const child = spawn(command, args, {
      // As JupyterHub: only env_keep from the hub's environment, never the hub's own secrets
      // (JUPYTER_PASSWORD, CONFIGPROXY_AUTH_TOKEN, database passwords, …).
      env: { ...keptEnvironment(), ...this.#service.environment, ...this.#env },
      cwd: this.#service.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    const forward = (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n'))
        if (line.trim()) this.#log.info({ line }, 'service output');
    };
    child.stdout?.on('data', forward);
    child.stderr?.on('data', forward);
    child.once('error', (error) => this.#log.error({ err: error, command }, 'cannot start the service'));
    child.once('exit', (code, signal) => {
      this.#child = undefined;
      if (this.#stopping) return;
      // As JupyterHub: a service that dies is restarted, with a growing pause up to a minute.
      const delayMs = Math.min(60_000, 1000 * 2 ** Math.min(this.#restarts++, 6));
      this.#log.warn({ code, signal, restartInMs: delayMs }, 'service exited; restarting');
      this.#timer = setTimeout(() => this.start(), delayMs);
      this.#timer.unref();
    });
    this.#log.info({ pid: child.pid }, 'service started');
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async stop(graceMs = 5000): Promise<void> {
    this.#stopping = true;
    clearTimeout(this.#timer);
    const child = this.#child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

function keptEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const key of defaultEnvKeep) {
    const value = process.env[key];
    if (value !== undefined) env[key] = value;
  }
  return env;
}
