// Test parts: a hub on loopback with our real proxy (from its sources), a spawner that runs a
// real HTTP server process, and a small client for the proxy's REST API.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLogger, type Logger } from '@seahorse/runtime';
import { freePort, LogCapture } from '@seahorse/runtime/testing';
import { buildConfig, flattenConfig, type HubConfig } from '../src/config.ts';
import { proxyClientFactory, spawnerFactoryFor } from '../src/parts.ts';
import { type HubServerOptions, type RunningHub, startHub } from '../src/server.ts';
import type { JsonObject, Spawner, SpawnerContext } from '../src/spawners/spawner.ts';
import type { BoundSpawnerFactory } from '../src/spawns.ts';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..', '..');
export const proxySource = join(repoRoot, 'packages', 'proxy', 'src', 'cli.ts');

const serverScript = `
const http = require('node:http');
const port = Number(process.env.PORT);
const prefix = process.env.JUPYTERHUB_SERVICE_PREFIX || '/';
if (process.env.FAIL_START) { console.error('cannot start: ' + process.env.FAIL_START); process.exit(3); }
http.createServer((req, res) => {
  res.writeHead(200, {'content-type': 'application/json'});
  res.end(JSON.stringify({ path: req.url, user: process.env.JUPYTERHUB_USER, prefix }));
}).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
`;

/** Runs a tiny real HTTP server per user server; state {pid, port} lets a new hub re-attach. */
export function processSpawnerFactory(extraEnv: Record<string, string> = {}): BoundSpawnerFactory {
  return (context: SpawnerContext): Spawner => {
    let pid = typeof context.state?.pid === 'number' ? context.state.pid : 0;
    let port = typeof context.state?.port === 'number' ? context.state.port : 0;
    const alive = () => {
      if (!pid) return false;
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    return {
      async start() {
        port = await freePort();
        context.progress({ progress: 10, message: 'starting a test server' });
        const options = context.spec.userOptions;
        if (typeof options.delay_ms === 'number') {
          context.progress({ progress: 50, message: 'waiting as asked' });
          await new Promise((resolve) => setTimeout(resolve, options.delay_ms as number));
        }
        const child = spawn(process.execPath, ['-e', serverScript], {
          env: {
            ...process.env,
            ...extraEnv,
            ...(typeof options.fail === 'string' ? { FAIL_START: options.fail } : {}),
            PORT: String(port),
            JUPYTERHUB_USER: context.spec.user.name,
            JUPYTERHUB_SERVICE_PREFIX: context.spec.servicePrefix,
          },
          stdio: ['ignore', 'ignore', 'pipe'],
          detached: true,
        });
        child.unref();
        pid = child.pid ?? 0;
        let stderr = '';
        child.stderr?.on('data', (chunk: Buffer) => {
          stderr += chunk.toString();
        });
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        const deadline = Date.now() + 20_000;
        while (Date.now() < deadline) {
          const early = await Promise.race([exited, new Promise((r) => setTimeout(() => r('wait'), 50))]);
          if (early !== 'wait') throw new Error(`server exited with status ${early}: ${stderr.trim()}`);
          try {
            await fetch(`http://127.0.0.1:${port}/`);
            return `http://127.0.0.1:${port}`;
          } catch {
            // not listening yet
          }
        }
        throw new Error('test server did not answer');
      },
      async poll() {
        return alive() ? null : 0;
      },
      async stop() {
        if (!alive()) return;
        process.kill(pid, 'SIGTERM');
        const deadline = Date.now() + 5000;
        while (alive() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (alive()) process.kill(pid, 'SIGKILL');
      },
      state(): JsonObject {
        return { pid, port };
      },
    };
  };
}

export interface TestHub extends RunningHub {
  url: string;
  proxyUrl: string;
  adminToken: string;
  config: HubConfig;
  logs: LogCapture;
  dir: string;
  api(path: string, init?: RequestInit & { token?: string }): Promise<Response>;
  close(): Promise<void>;
}

export const adminToken = 'admin-service-token-0123456789abcdef';

export async function testConfig(
  traits: Record<string, unknown> = {},
  dir = mkdtempSync(join(tmpdir(), 'seahorse-hub-')),
): Promise<{ config: HubConfig; dir: string }> {
  const proxyPort = await freePort();
  const apiPort = await freePort();
  const { values, hooks } = flattenConfig(
    {
      'JupyterHub.db_url': `sqlite:///${join(dir, 'hub.sqlite')}`,
      'JupyterHub.hub_bind_url': 'http://127.0.0.1:0',
      'JupyterHub.bind_url': `http://127.0.0.1:${proxyPort}`,
      'JupyterHub.authenticator_class': 'dummy',
      'JupyterHub.services': [{ name: 'admin-service', api_token: adminToken, admin: true }],
      'JupyterHub.last_activity_interval': 0,
      'ConfigurableHTTPProxy.api_url': `http://127.0.0.1:${apiPort}`,
      'ConfigurableHTTPProxy.command': [process.execPath, '--conditions=seahorse-source', proxySource],
      'ConfigurableHTTPProxy.check_running_interval': 0,
      'ConfigurableHTTPProxy.pid_file': join(dir, 'jupyterhub-proxy.pid'),
      'Spawner.poll_interval': 0,
      ...traits,
    },
    'test',
  );
  return { config: buildConfig(values, {}, hooks), dir };
}

export async function startTestHub(
  traits: Record<string, unknown> = {},
  options: { dir?: string; spawnerFactory?: BoundSpawnerFactory | 'configured'; log?: Logger } = {},
): Promise<TestHub> {
  const { config, dir } = await testConfig(traits, options.dir);
  const logs = new LogCapture();
  const log = options.log ?? createLogger({ name: 'hub', level: 'debug', destination: logs });
  const hubOptions: HubServerOptions = {
    config,
    log,
    proxyClient: proxyClientFactory,
    spawnerFactory:
      options.spawnerFactory === 'configured'
        ? spawnerFactoryFor(config)
        : (options.spawnerFactory ?? processSpawnerFactory()),
  };
  const running = await startHub(hubOptions);
  const url = `http://127.0.0.1:${running.address.port}`;
  return {
    ...running,
    url,
    proxyUrl: config.bindUrl.href.replace(/\/$/, ''),
    adminToken,
    config,
    logs,
    dir,
    api: (path, init = {}) => {
      const { token = adminToken, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (token) headers.set('authorization', `token ${token}`);
      return fetch(`${url}/hub/api${path}`, { ...rest, headers });
    },
    close: async () => {
      await running.stop('test');
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The cookies of a browser that opened the login page and signed in with the password form. */
export async function signIn(hubUrl: string, username: string, password: string): Promise<string> {
  const form = await fetch(`${hubUrl}/hub/login`);
  const xsrfCookie = form.headers
    .getSetCookie()
    .map((line) => line.split(';')[0]!)
    .find((pair) => pair.startsWith('_xsrf='));
  const token = /name="_xsrf" value="([^"]+)"/.exec(await form.text())?.[1];
  if (!xsrfCookie || !token) throw new Error('the login page has no _xsrf token');
  const response = await fetch(`${hubUrl}/hub/login`, {
    method: 'POST',
    headers: { cookie: xsrfCookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ username, password, _xsrf: token }),
    redirect: 'manual',
  });
  const login = response.headers
    .getSetCookie()
    .map((line) => line.split(';')[0]!)
    .find((pair) => pair.startsWith('jupyterhub-hub-login='));
  if (response.status !== 302 || !login) throw new Error(`sign-in failed: ${response.status}`);
  return `${login}; ${xsrfCookie}`;
}
