// Starting the two hubs the benches compare — seahorse-hub and JupyterHub 3.0 — each with its
// proxy, a bench service token and the local process spawner, on free loopback ports.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const binPath = `${join(root, 'node_modules', '.bin')}:${process.env.PATH}`;

export interface BenchHub {
  name: string;
  url: string;
  proxyUrl: string;
  proxyApi: string;
  pid: number;
  stop(): Promise<void>;
}

export interface BenchHubSetup {
  dir: string;
  /** sqlite:///… or postgres://… */
  dbUrl: string;
  /** An admin service's API token. */
  serviceToken: string;
  proxyToken?: string;
  /** Arguments every jupyterhub-singleuser gets (e.g. --allow-root). */
  singleuserArgs: string[];
  admin?: string;
  startTimeout?: number;
}

/** seahorse-hub from `entry` (the built bin or the sources), with `extra` merged into sections. */
export async function startSeahorseHub(
  setup: BenchHubSetup,
  options: { nodeArgs: string[]; entry: string; extra?: Record<string, Record<string, unknown>> },
): Promise<BenchHub> {
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(setup.dir, 'hub.yaml');
  const extra = options.extra ?? {};
  writeFileSync(
    config,
    JSON.stringify({
      ...extra,
      JupyterHub: {
        hub_bind_url: `http://127.0.0.1:${hubPort}`,
        bind_url: `http://127.0.0.1:${proxyPort}`,
        db_url: setup.dbUrl,
        authenticator_class: 'dummy',
        services: [{ name: 'bench', api_token: setup.serviceToken, admin: true }],
        log_level: 'warn',
        ...extra.JupyterHub,
      },
      ...(setup.admin ? { Authenticator: { admin_users: [setup.admin], allow_all: true } } : {}),
      ConfigurableHTTPProxy: {
        api_url: `http://127.0.0.1:${apiPort}`,
        ...(setup.proxyToken ? { auth_token: setup.proxyToken } : {}),
        ...extra.ConfigurableHTTPProxy,
      },
      Spawner: {
        args: setup.singleuserArgs,
        notebook_dir: setup.dir,
        ...(setup.startTimeout ? { start_timeout: setup.startTimeout } : {}),
      },
    }),
  );
  const proc = new ManagedProcess(
    'seahorse-hub',
    process.execPath,
    [...options.nodeArgs, options.entry, '--config', config],
    { cwd: setup.dir, env: { ...process.env, PATH: binPath } },
  );
  const url = `http://127.0.0.1:${hubPort}`;
  await proc.untilReady(
    waitFor('seahorse-hub', async () => (await fetch(`${url}/hub/health`)).ok, { timeoutMs: 60_000 }),
  );
  return {
    name: 'seahorse-hub',
    url,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    proxyApi: `http://127.0.0.1:${apiPort}`,
    pid: proc.pid,
    stop: () => proc.stop('SIGTERM', 30_000),
  };
}

/** JupyterHub 3.0 (Debian's), with the same setup written as a jupyterhub_config.py. */
export async function startJupyterHub(setup: BenchHubSetup): Promise<BenchHub> {
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const config = join(setup.dir, 'jupyterhub_config.py');
  writeFileSync(
    config,
    [
      `c.JupyterHub.hub_bind_url = 'http://127.0.0.1:${hubPort}'`,
      `c.JupyterHub.bind_url = 'http://127.0.0.1:${proxyPort}'`,
      `c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:${apiPort}'`,
      // Debian's CHP lacks a dependency on this machine; ours is the same API.
      `c.ConfigurableHTTPProxy.command = ['${join(root, 'node_modules', '.bin', 'configurable-http-proxy')}']`,
      ...(setup.proxyToken ? [`c.ConfigurableHTTPProxy.auth_token = '${setup.proxyToken}'`] : []),
      `c.JupyterHub.db_url = '${setup.dbUrl.replace('postgres://', 'postgresql://')}'`,
      "c.JupyterHub.authenticator_class = 'dummy'",
      ...(setup.admin ? [`c.Authenticator.admin_users = {'${setup.admin}'}`] : []),
      `c.JupyterHub.services = [{'name': 'bench', 'api_token': '${setup.serviceToken}', 'admin': True}]`,
      `c.JupyterHub.cookie_secret_file = '${join(setup.dir, 'cookie_secret')}'`,
      // The local process spawner as this process's user, not a system user per hub user.
      "c.JupyterHub.spawner_class = 'simple'",
      `c.Spawner.args = ${JSON.stringify(setup.singleuserArgs)}`,
      `c.Spawner.notebook_dir = '${setup.dir}'`,
      ...(setup.startTimeout ? [`c.Spawner.start_timeout = ${setup.startTimeout}`] : []),
      "c.JupyterHub.log_level = 'WARN'",
    ].join('\n'),
  );
  const proc = new ManagedProcess('jupyterhub', 'jupyterhub', ['-f', config], { cwd: setup.dir });
  const url = `http://127.0.0.1:${hubPort}`;
  await proc.untilReady(
    waitFor('jupyterhub', async () => (await fetch(`${url}/hub/api/`)).ok, { timeoutMs: 60_000 }),
  );
  return {
    name: 'JupyterHub 3.0',
    url,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    proxyApi: `http://127.0.0.1:${apiPort}`,
    pid: proc.pid,
    stop: () => proc.stop('SIGTERM', 30_000),
  };
}
