// The hub's bin as users run it, for the tests that kill it and start it again on the same
// SQLite database: a hub.yaml with an admin service token, and the process started from it.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, ManagedProcess } from '@seahorse/runtime/testing';
import { repoRoot } from './helpers.ts';

const cli = new URL('../src/cli.ts', import.meta.url).pathname;

export type HubApi = (path: string, init?: RequestInit) => Promise<Response>;

/** Writes `dir/hub.yaml` on free ports plus `lines`; `api` calls the hub's REST API as admin. */
export async function writeHubYaml(
  dir: string,
  token: string,
  lines: string[],
): Promise<{ api: HubApi; hub: string; apiPort: number; proxyPort: number }> {
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  writeFileSync(
    join(dir, 'hub.yaml'),
    [
      'JupyterHub:',
      `  hub_bind_url: http://127.0.0.1:${hubPort}`,
      `  bind_url: http://127.0.0.1:${proxyPort}`,
      '  db_url: sqlite:///hub.sqlite',
      '  authenticator_class: dummy',
      '  cleanup_servers: false',
      '  services:',
      `    - {name: admin, api_token: ${token}, admin: true}`,
      'ConfigurableHTTPProxy:',
      `  api_url: http://127.0.0.1:${apiPort}`,
      ...lines,
      '',
    ].join('\n'),
  );
  const hub = `http://127.0.0.1:${hubPort}/hub/api`;
  return {
    hub,
    apiPort,
    proxyPort,
    api: (path, init = {}) =>
      fetch(`${hub}${path}`, { ...init, headers: { authorization: `token ${token}` } }),
  };
}

/** `seahorse-hub --config hub.yaml` in `dir`, with the workspace's proxy bin on PATH. */
export function startHubBin(dir: string, env: NodeJS.ProcessEnv = {}): ManagedProcess {
  return new ManagedProcess(
    'seahorse-hub',
    process.execPath,
    ['--conditions=seahorse-source', cli, '--config', 'hub.yaml'],
    {
      cwd: dir,
      env: { ...process.env, ...env, PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH}` },
    },
  );
}
