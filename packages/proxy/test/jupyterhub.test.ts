// The real JupyterHub 3.0 (Debian's jupyterhub package, with jupyterhub-singleuser and an
// ipykernel) against our proxy, in both ways the seeds deploy it.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const config = fileURLToPath(new URL('./fixtures/jupyterhub_config.py', import.meta.url));
const jupyterhub = '/usr/bin/jupyterhub';
const user = 'alice';

interface Ports {
  hub: number;
  proxy: number;
  api: number;
}

class Deployment {
  readonly dir = mkdtempSync(join(tmpdir(), 'seahorse-jh-'));
  readonly serviceToken = randomUUID();
  readonly proxyToken = randomUUID();
  readonly serverPids = new Set<number>();
  hub: ManagedProcess | undefined;
  proxy: ManagedProcess | undefined;
  readonly ports: Ports;
  readonly mode: 'managed' | 'external';

  constructor(mode: 'managed' | 'external', ports: Ports) {
    this.mode = mode;
    this.ports = ports;
  }

  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      // Ours first: Debian's jupyterhub also installs an old configurable-http-proxy in /usr/bin.
      PATH: [join(root, 'node_modules', '.bin'), process.env.PATH].join(delimiter),
      SEAHORSE_JH_DIR: this.dir,
      SEAHORSE_JH_MODE: this.mode,
      SEAHORSE_JH_HUB_PORT: String(this.ports.hub),
      SEAHORSE_JH_PROXY_PORT: String(this.ports.proxy),
      SEAHORSE_JH_PROXY_API_PORT: String(this.ports.api),
      SEAHORSE_JH_SERVICE_TOKEN: this.serviceToken,
      CONFIGPROXY_AUTH_TOKEN: this.proxyToken,
    };
  }

  async startProxy(): Promise<void> {
    const { proxy, api } = this.ports;
    this.proxy = new ManagedProcess(
      'proxy',
      join(root, 'node_modules', '.bin', 'configurable-http-proxy'),
      ['--ip', '127.0.0.1', '--port', String(proxy), '--api-ip', '127.0.0.1', '--api-port', String(api)],
      { env: this.env },
    );
    await this.proxy.untilReady(waitFor('the proxy API', async () => (await this.routes()) !== undefined));
  }

  async startHub(): Promise<void> {
    this.hub = new ManagedProcess('jupyterhub', jupyterhub, ['-f', config], { cwd: this.dir, env: this.env });
    await this.hub.untilReady(
      waitFor(
        'the hub API through the proxy',
        async () => (await fetch(`http://127.0.0.1:${this.ports.proxy}/hub/api/`)).ok,
        { timeoutMs: 60_000, intervalMs: 100 },
      ),
    );
  }

  /** The proxy's table as the hub sees it, or undefined while the API is down. */
  async routes(): Promise<Record<string, Record<string, unknown>> | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.ports.api}/api/routes`, {
        headers: { authorization: `token ${this.proxyToken}` },
      });
      return res.ok ? ((await res.json()) as Record<string, Record<string, unknown>>) : undefined;
    } catch {
      return undefined;
    }
  }

  async hubApi(method: string, path: string, body?: unknown): Promise<Response> {
    return fetch(`http://127.0.0.1:${this.ports.proxy}/hub/api${path}`, {
      method,
      headers: { authorization: `token ${this.serviceToken}` },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  /** Starts a (named) server and waits until the hub calls it ready. */
  async spawn(serverName = ''): Promise<string> {
    const path = serverName ? `/users/${user}/servers/${serverName}` : `/users/${user}/server`;
    const res = await this.hubApi('POST', path, {});
    assert.ok([201, 202].includes(res.status), `spawn answered ${res.status}: ${await res.text()}`);
    await waitFor(
      `server '${serverName}' to be ready`,
      async () => {
        const model = (await (await this.hubApi('GET', `/users/${user}`)).json()) as {
          servers: Record<string, { ready: boolean; state?: { pid?: number } }>;
        };
        const server = model.servers[serverName];
        if (server?.state?.pid) this.serverPids.add(server.state.pid);
        return server?.ready;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    return serverName ? `/user/${user}/${serverName}` : `/user/${user}`;
  }

  async stopServer(serverName = ''): Promise<void> {
    const path = serverName ? `/users/${user}/servers/${serverName}` : `/users/${user}/server`;
    const res = await this.hubApi('DELETE', path);
    assert.ok([202, 204].includes(res.status), `stop answered ${res.status}`);
  }

  async close(): Promise<void> {
    await this.hub?.stop('SIGTERM', 10_000);
    await this.proxy?.stop('SIGTERM', 5_000);
    // cleanup_servers is off so servers outlive hub restarts; end them here.
    for (const pid of this.serverPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function newPorts(): Promise<Ports> {
  return { hub: await freePort(), proxy: await freePort(), api: await freePort() };
}

/** Starts a kernel through the proxy and runs `1+1` over its websocket. */
async function runOnePlusOne(d: Deployment, prefix: string): Promise<string> {
  const base = `http://127.0.0.1:${d.ports.proxy}${prefix}`;
  const tokenRes = await d.hubApi('POST', `/users/${user}/tokens`, {
    note: 'seahorse test',
    expires_in: 600,
  });
  const { token } = (await tokenRes.json()) as { token: string };
  const kernelRes = await fetch(`${base}/api/kernels`, {
    method: 'POST',
    headers: { authorization: `token ${token}` },
    body: JSON.stringify({ name: 'python3' }),
  });
  assert.equal(kernelRes.status, 201, await kernelRes.clone().text());
  const { id } = (await kernelRes.json()) as { id: string };
  const session = randomUUID();
  const ws = new WebSocket(
    `ws://127.0.0.1:${d.ports.proxy}${prefix}/api/kernels/${id}/channels?session_id=${session}&token=${token}`,
  );
  // A request sent while the server is still connecting to the kernel can be dropped, so ask
  // again every few seconds (each with its own id) until one result arrives.
  const sent = new Set<string>();
  const execute = () => {
    const msgId = randomUUID();
    sent.add(msgId);
    ws.send(
      JSON.stringify({
        header: {
          msg_id: msgId,
          username: user,
          session,
          msg_type: 'execute_request',
          version: '5.3',
          date: new Date().toISOString(),
        },
        parent_header: {},
        metadata: {},
        buffers: [],
        channel: 'shell',
        content: {
          code: '1+1',
          silent: false,
          store_history: true,
          user_expressions: {},
          allow_stdin: false,
          stop_on_error: true,
        },
      }),
    );
  };
  let resend: NodeJS.Timeout | undefined;
  const result = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no execute_result within 60 s')), 60_000);
    ws.onerror = () => reject(new Error('kernel websocket failed'));
    ws.onopen = () => {
      execute();
      resend = setInterval(execute, 5000);
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as {
        msg_type: string;
        parent_header: { msg_id?: string };
        content: { data?: Record<string, string> };
      };
      if (sent.has(message.parent_header.msg_id ?? '') && message.msg_type === 'execute_result') {
        clearTimeout(timer);
        resolve(message.content.data!['text/plain']!);
      }
    };
  }).finally(() => clearInterval(resend));
  ws.close();
  await fetch(`${base}/api/kernels/${id}`, {
    method: 'DELETE',
    headers: { authorization: `token ${token}` },
  });
  return result;
}

function requireJupyterHub(): void {
  assert.ok(
    existsSync(jupyterhub) && existsSync('/usr/bin/jupyterhub-singleuser'),
    "JupyterHub 3.0 is missing: run 'npm test' (it installs Debian's jupyterhub) or apt-get install jupyterhub",
  );
}

/** The user story both deployments must pass. */
async function userJourney(d: Deployment): Promise<void> {
  assert.equal((await d.hubApi('POST', `/users/${user}`)).status, 201);
  const prefix = await d.spawn();
  const routes = (await d.routes())!;
  assert.equal(routes[prefix]?.user, user, 'the hub stored its route data beside the target');
  assert.equal(routes['/']?.hub, true);
  assert.match(String(routes[prefix]?.last_activity), /Z$/);

  const status = await fetch(`http://127.0.0.1:${d.ports.proxy}${prefix}/api/status`, {
    headers: { authorization: `token ${d.serviceToken}` },
  });
  assert.equal(status.status, 200, 'the single-user server answers through the proxy');
  assert.equal(await runOnePlusOne(d, prefix), '2');

  // The hub polls activity from the proxy (GET /api/routes) and records it per user.
  const model = (await (await d.hubApi('GET', `/users/${user}`)).json()) as { last_activity: string | null };
  assert.ok(model.last_activity, 'the hub has seen activity');

  const named = await d.spawn('second');
  assert.ok((await d.routes())![named], 'a named server gets its own route');
  assert.equal(await runOnePlusOne(d, named), '2');

  await d.stopServer('');
  await waitFor('the default server route to disappear', async () => !(await d.routes())![prefix], {
    timeoutMs: 30_000,
  });
  assert.ok((await d.routes())![named], 'the named server keeps its route');
}

test('JupyterHub starts our configurable-http-proxy by name and runs a user journey through it', async () => {
  requireJupyterHub();
  const d = new Deployment('managed', await newPorts());
  try {
    await d.startHub();
    await userJourney(d);

    // The hub restarts a proxy that died, on the same ports, and restores its routes.
    const pidFile = join(d.dir, 'proxy.pid');
    const firstPid = Number(readFileSync(pidFile, 'utf8'));
    process.kill(firstPid, 'SIGKILL');
    await waitFor(
      'the hub to restart the proxy with its routes',
      async () => {
        const routes = await d.routes();
        return (
          routes?.[`/user/${user}/second`] !== undefined && Number(readFileSync(pidFile, 'utf8')) !== firstPid
        );
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    await d.stopServer('second');
  } finally {
    await d.close();
  }
});

test('JupyterHub with a separately started proxy (should_start = False) re-syncs routes after a restart', async () => {
  requireJupyterHub();
  const d = new Deployment('external', await newPorts());
  try {
    await d.startProxy();
    await d.startHub();
    await userJourney(d);

    // The hub goes away, a route is lost meanwhile; on its return the hub adds it back.
    await d.hub!.stop('SIGTERM', 10_000);
    const lost = `/user/${user}/second`;
    const removed = await fetch(`http://127.0.0.1:${d.ports.api}/api/routes${lost}`, {
      method: 'DELETE',
      headers: { authorization: `token ${d.proxyToken}` },
    });
    assert.equal(removed.status, 204);
    await d.startHub();
    await waitFor('the hub to re-add the lost route', async () => (await d.routes())?.[lost] !== undefined, {
      timeoutMs: 30_000,
    });
    assert.equal(await runOnePlusOne(d, lost), '2');
    await d.stopServer('second');
  } finally {
    await d.close();
  }
});
