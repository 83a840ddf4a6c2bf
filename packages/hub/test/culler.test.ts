// The built-in idle culler with second-scale timeouts, over real server processes behind our
// proxy: idle servers stopped, active ones (through the proxy or by their own reports) kept,
// named servers removed when asked, max_age, cull_users, the metric and the log line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

async function startServer(hub: TestHub, user: string, server = ''): Promise<void> {
  const path = server ? `/users/${user}/servers/${server}` : `/users/${user}/server`;
  const response = await hub.api(path, { method: 'POST' });
  assert.equal(response.status, 201, await response.text());
}

async function userModel(hub: TestHub, user: string): Promise<Json | undefined> {
  const response = await hub.api(`/users/${user}`);
  return response.status === 200 ? ((await response.json()) as Json) : undefined;
}

async function cullCount(hub: TestHub, kind: string, reason: string): Promise<number> {
  const text = await (await fetch(`${hub.url}/hub/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`seahorse_hub_idle_culls_total{kind="${kind}",reason="${reason}"}`));
  return line ? Number(line.split(' ')[1]) : 0;
}

test('idle servers are culled after the timeout; activity through the proxy and reported by a server keeps them; named servers are removed when asked', async () => {
  const hub = await startTestHub({
    'JupyterHub.allow_named_servers': true,
    'JupyterHub.authenticate_prometheus': false,
    'IdleCuller.enabled': true,
    'IdleCuller.timeout': 1.5,
    'IdleCuller.cull_every': 0.25,
    'IdleCuller.remove_named_servers': true,
  });
  const keepAlive: NodeJS.Timeout[] = [];
  try {
    await hub.api('/users', {
      method: 'POST',
      body: JSON.stringify({ usernames: ['idle', 'browsing', 'reporting'] }),
    });
    await startServer(hub, 'idle');
    await startServer(hub, 'idle', 'scratch');
    await startServer(hub, 'browsing');
    await startServer(hub, 'reporting');
    // One user keeps using the server through the proxy; another's server reports its own activity.
    keepAlive.push(
      setInterval(() => {
        fetch(`${hub.proxyUrl}/user/browsing/x`).then(
          (r) => r.body?.cancel(),
          () => undefined,
        );
      }, 200),
      setInterval(() => {
        hub
          .api('/users/reporting/activity', {
            method: 'POST',
            body: JSON.stringify({ servers: { '': { last_activity: new Date().toISOString() } } }),
          })
          .then(
            (r) => r.body?.cancel(),
            () => undefined,
          );
      }, 200),
    );
    const idle = await waitFor(
      'the idle servers to be culled',
      async () => {
        const model = await userModel(hub, 'idle');
        return model && model.server === null && !model.servers.scratch ? model : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    // The default server stays (stopped); the named one was removed.
    assert.deepEqual(Object.keys(idle.servers), []);
    assert.equal((await hub.db.all("SELECT name FROM spawners WHERE name = 'scratch'")).length, 0);
    // Well past the timeout, the active servers are still running.
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal((await userModel(hub, 'browsing'))?.server, '/user/browsing/');
    assert.equal((await userModel(hub, 'reporting'))?.server, '/user/reporting/');
    // Their processes are gone: the proxy has no route left for them.
    const routes = (await (await hub.api('/proxy')).json()) as Json;
    assert.equal(routes['/user/idle/'], undefined);
    assert.equal(routes['/user/idle/scratch/'], undefined);
    assert.equal(await cullCount(hub, 'server', 'inactive'), 2);
    const line = (hub.logs.lines as Json[]).find(
      (l) => l.msg === 'idle culler: stopping server' && l.user === 'idle',
    );
    assert.ok(line, 'a log line for the cull');
    assert.equal(line.reason, 'inactive');
    assert.ok(line.idle_s >= 1, `idle_s ${line.idle_s}`);
    // The users were not deleted (cull_users is off).
    assert.ok(await userModel(hub, 'idle'));
  } finally {
    for (const timer of keepAlive) clearInterval(timer);
    await hub.close();
  }
});

test('max_age stops an active server; cull_users deletes a user idle with no server; a named server is only stopped by default', async () => {
  const hub = await startTestHub({
    'JupyterHub.allow_named_servers': true,
    'JupyterHub.authenticate_prometheus': false,
    'IdleCuller.enabled': true,
    'IdleCuller.timeout': 2,
    'IdleCuller.max_age': 1,
    'IdleCuller.cull_every': 0.25,
    'IdleCuller.cull_users': true,
  });
  try {
    await hub.api('/users', { method: 'POST', body: JSON.stringify({ usernames: ['busy', 'gone'] }) });
    await startServer(hub, 'busy', 'lab');
    const timer = setInterval(() => {
      fetch(`${hub.proxyUrl}/user/busy/lab/x`).then(
        (r) => r.body?.cancel(),
        () => undefined,
      );
    }, 100);
    try {
      await waitFor(
        'the old server to be culled',
        async () => {
          const model = await userModel(hub, 'busy');
          return model?.servers.lab === undefined ? true : undefined;
        },
        { timeoutMs: 15_000, intervalMs: 100 },
      );
    } finally {
      clearInterval(timer);
    }
    assert.equal(await cullCount(hub, 'server', 'max_age'), 1);
    // Stopped but kept (remove_named_servers is off): it is still in the database.
    assert.equal((await hub.db.all("SELECT name FROM spawners WHERE name = 'lab'")).length, 1);
    // 'gone' never had a server; once idle for the timeout it is deleted. 'busy' just used its
    // server, so it stays until it has been idle that long too.
    await waitFor(
      'the idle user to be deleted',
      async () => ((await userModel(hub, 'gone')) ? undefined : true),
      {
        timeoutMs: 15_000,
        intervalMs: 100,
      },
    );
    assert.ok((await cullCount(hub, 'user', 'inactive')) >= 1);
    const line = (hub.logs.lines as Json[]).find(
      (l) => l.msg === 'idle culler: user deleted' && l.user === 'gone',
    );
    assert.ok(line && line.idle_s >= 2, JSON.stringify(line));
  } finally {
    await hub.close();
  }
});

test('jupyterhub-singleuser left idle is culled: its process ends and its route goes', async () => {
  const hub = await startTestHub(
    {
      'JupyterHub.authenticate_prometheus': false,
      'Authenticator.allow_all': true,
      'Spawner.start_timeout': 90,
      'Spawner.args': ['--allow-root'],
      'Spawner.notebook_dir': '/tmp',
      'IdleCuller.enabled': true,
      'IdleCuller.timeout': 2,
      'IdleCuller.cull_every': 0.5,
    },
    { spawnerFactory: 'configured' },
  );
  try {
    await hub.api('/users/carol', { method: 'POST' });
    await startServer(hub, 'carol');
    const row = await hub.db.get<{ state: string }>('SELECT state FROM spawners WHERE name = ?', ['']);
    const pid = (JSON.parse(row!.state) as { pid: number }).pid;
    assert.ok(pid > 0);
    await waitFor(
      'carol’s server to be culled',
      async () => ((await userModel(hub, 'carol'))?.server === null ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    await waitFor(
      'the server process to exit',
      async () => {
        try {
          process.kill(pid, 0);
          return undefined;
        } catch {
          return true;
        }
      },
      { timeoutMs: 15_000 },
    );
    const routes = (await (await hub.api('/proxy')).json()) as Json;
    assert.equal(routes['/user/carol/'], undefined);
    assert.equal(await cullCount(hub, 'server', 'inactive'), 1);
  } finally {
    await hub.close();
  }
});
