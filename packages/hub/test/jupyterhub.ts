// The real JupyterHub 3.0 (Debian's `jupyterhub`) on loopback, for differential tests: same
// request to it and to seahorse-hub, same answer expected. Its proxy is ours, from the sources
// (Debian's configurable-http-proxy package lacks its modules here); servers are
// SimpleLocalProcessSpawner running the given command.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { proxySource } from './helpers.ts';

export interface JupyterHub {
  url: string;
  proxyUrl: string;
  token: string;
  api(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

const py = (value: unknown) =>
  JSON.stringify(value)
    .replace(/\btrue\b/g, 'True')
    .replace(/\bfalse\b/g, 'False');

/** Starts JupyterHub with DummyAuthenticator (any password) and `lines` of extra configuration. */
export async function startJupyterHub(cmd: string[], lines: string[] = []): Promise<JupyterHub> {
  const dir = mkdtempSync(join(tmpdir(), 'jupyterhub-'));
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const token = 'jupyterhub-probe-token-0123456789abcdef';
  writeFileSync(
    join(dir, 'jupyterhub_config.py'),
    [
      `c.JupyterHub.hub_bind_url = 'http://127.0.0.1:${hubPort}'`,
      `c.JupyterHub.bind_url = 'http://127.0.0.1:${proxyPort}'`,
      `c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:${apiPort}'`,
      `c.ConfigurableHTTPProxy.command = ${py([process.execPath, '--conditions=seahorse-source', proxySource])}`,
      `c.JupyterHub.db_url = 'sqlite:///${join(dir, 'jupyterhub.sqlite')}'`,
      `c.JupyterHub.cookie_secret_file = '${join(dir, 'cookie_secret')}'`,
      "c.JupyterHub.authenticator_class = 'dummy'",
      "c.JupyterHub.spawner_class = 'simple'",
      `c.Spawner.cmd = ${py(cmd)}`,
      `c.JupyterHub.services = [{'name': 'probe', 'api_token': '${token}', 'admin': True}]`,
      "c.JupyterHub.log_level = 'WARN'",
      ...lines,
    ].join('\n'),
  );
  const proc = new ManagedProcess('jupyterhub', 'jupyterhub', ['-f', join(dir, 'jupyterhub_config.py')], {
    cwd: dir,
  });
  const url = `http://127.0.0.1:${hubPort}`;
  await proc.untilReady(
    waitFor('jupyterhub', async () => (await fetch(`${url}/hub/api/`)).ok, { timeoutMs: 60_000 }),
  );
  return {
    url,
    proxyUrl: `http://127.0.0.1:${proxyPort}`,
    token,
    api: (path, init = {}) => {
      const headers = new Headers(init.headers);
      headers.set('authorization', `token ${token}`);
      return fetch(`${url}/hub/api${path}`, { ...init, headers });
    },
    stop: async () => {
      await proc.stop('SIGTERM', 20_000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
