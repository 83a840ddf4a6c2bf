// The Docker spawner stopped while it starts (the hub's spawn timeout, a user's stop): a real HTTP
// server on a unix socket plays an engine whose pull never ends or whose create is slow. The start
// must end and leave no container behind, since nobody would stop it and its token is revoked.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { createDockerSpawner, type DockerSpawnerOptions } from './docker.ts';
import { DockerClient } from './docker-client.ts';
import { defaultDockerTraits } from './docker-options.ts';
import type { JsonObject, ServerSpec } from './spawner.ts';
import { SpawnStateError } from './spawner-errors.ts';

const id = 'a'.repeat(64);

interface Engine {
  client: DockerClient;
  calls: string[];
  containers: Map<string, { running: boolean }>;
  close(): Promise<void>;
}

async function fakeEngine(
  handler: (req: IncomingMessage, res: ServerResponse, engine: Engine) => boolean,
): Promise<Engine> {
  const dir = mkdtempSync(join(tmpdir(), 'seahorse-engine-'));
  const socketPath = join(dir, 'docker.sock');
  const engine: Engine = {
    client: new DockerClient({ socketPath, requestTimeoutMs: 2000 }),
    calls: [],
    containers: new Map(),
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    const path = url.pathname.replace(/^\/v[\d.]+/, '');
    engine.calls.push(`${req.method} ${path}`);
    if (handler(req, res, engine)) return;
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    if (req.method === 'GET' && path.startsWith('/images/')) return send(404, { message: 'no such image' });
    if (req.method === 'GET' && path.startsWith('/containers/')) {
      const container = engine.containers.get(id);
      if (!container) return send(404, { message: 'No such container' });
      return send(200, { Id: id, State: { Running: container.running, ExitCode: 0 } });
    }
    if (req.method === 'POST' && path === `/containers/${id}/start`) {
      const container = engine.containers.get(id);
      if (container) container.running = true;
      return send(container ? 204 : 404);
    }
    if (req.method === 'POST' && path === `/containers/${id}/stop`) {
      const container = engine.containers.get(id);
      if (container) container.running = false;
      return send(container ? 204 : 404);
    }
    if (req.method === 'DELETE' && path === `/containers/${id}`) {
      engine.containers.delete(id);
      return send(204);
    }
    send(500, { message: `unexpected ${req.method} ${path}` });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return engine;
}

function spec(): ServerSpec {
  const prefix = '/user/alice/';
  return {
    user: { name: 'alice', admin: false, groups: [] },
    serverName: '',
    apiToken: 'secret-token',
    oauthClientId: 'jupyterhub-user-alice',
    hubApiUrl: 'http://127.0.0.1:1/hub/api',
    baseUrl: '/',
    servicePrefix: prefix,
    oauthCallbackUrl: `${prefix}oauth_callback`,
    oauthScopes: [],
    oauthAccessScopes: [],
    activityUrl: 'http://127.0.0.1:1/hub/api/users/alice/activity',
    userOptions: {},
  };
}

const options: DockerSpawnerOptions = {
  ...defaultDockerTraits,
  image: 'example/never:1',
  cmd: null,
  args: [],
  environment: {},
  startTimeoutMs: 60_000,
  httpTimeoutMs: 60_000,
  memLimit: null,
  cpuLimit: null,
  ip: null,
};

function spawnerOn(
  engine: Engine,
  extra: Partial<DockerSpawnerOptions> = {},
  state: JsonObject | null = null,
) {
  return createDockerSpawner(
    {
      spec: spec(),
      state,
      log: createLogger({ name: 'hub', level: 'error' }),
      progress: () => undefined,
    },
    engine.client,
    { ...options, ...extra },
  );
}

test('stop() during a pull that never ends ends the pull and the start; no container is created', async () => {
  let pullClosed = false;
  const engine = await fakeEngine((req, res) => {
    if (req.method !== 'POST' || !req.url?.includes('/images/create')) return false;
    res.writeHead(200, { 'content-type': 'application/json' });
    // A progress line every 50 ms, forever: the between-lines deadline never fires.
    const timer = setInterval(() => res.write('{"status":"Downloading","id":"x"}\n'), 50);
    res.on('close', () => {
      clearInterval(timer);
      pullClosed = true;
    });
    return true;
  });
  try {
    const spawner = spawnerOn(engine);
    const starting = spawner.start();
    starting.catch(() => undefined);
    while (!engine.calls.includes('POST /images/create')) await new Promise((r) => setTimeout(r, 10));
    const began = Date.now();
    await spawner.stop(true);
    await assert.rejects(starting, SpawnStateError);
    assert.ok(Date.now() - began < 2000, 'the start ended promptly');
    while (!pullClosed) await new Promise((r) => setTimeout(r, 10));
    assert.ok(
      !engine.calls.some((call) => call.startsWith('POST /containers/create')),
      engine.calls.join('\n'),
    );
  } finally {
    await engine.close();
  }
});

test('stop() while the engine creates the container: the start removes what it created', async () => {
  let answerCreate: (() => void) | undefined;
  const engine = await fakeEngine((req, res, self) => {
    if (req.method === 'GET' && req.url?.includes('/images/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Id: 'sha256:1', Config: { Cmd: ['jupyterhub-singleuser'] } }));
      return true;
    }
    if (req.method === 'POST' && req.url?.includes('/containers/create')) {
      req.resume();
      answerCreate = () => {
        self.containers.set(id, { running: false });
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ Id: id }));
      };
      return true;
    }
    return false;
  });
  try {
    const spawner = spawnerOn(engine);
    const starting = spawner.start();
    starting.catch(() => undefined);
    while (!answerCreate) await new Promise((r) => setTimeout(r, 10));
    // The hub gives up: stop() finds no container by name yet.
    await spawner.stop(true);
    answerCreate();
    await assert.rejects(starting, SpawnStateError);
    assert.equal(engine.containers.size, 0, `a container was left: ${engine.calls.join('\n')}`);
    assert.ok(!engine.calls.includes(`POST /containers/${id}/start`), 'the container was never started');
  } finally {
    await engine.close();
  }
});

test('a name that names no container is not taken as another container’s id prefix', async () => {
  // The engine resolves GET /containers/aaaa/json to a container whose id starts with aaaa.
  const engine = await fakeEngine((req, res) => {
    if (req.method === 'GET' && req.url?.includes('/images/')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Id: 'sha256:1', Config: { Cmd: ['x'] } }));
      return true;
    }
    if (req.method === 'GET' && req.url?.includes('/containers/aaaa/json')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Id: id, Name: '/jupyter-bob', State: { Running: true } }));
      return true;
    }
    return false;
  });
  try {
    engine.containers.set(id, { running: true });
    const spawner = spawnerOn(engine, { name_template: 'aaaa' });
    await assert.rejects(spawner.start(), /unexpected POST \/containers\/create/);
    const restored = spawnerOn(engine, {}, { object_name: 'aaaa' });
    assert.equal(await restored.poll(), 0);
    await spawnerOn(engine, {}, { object_name: 'aaaa' }).stop(true);
    assert.ok(
      !engine.calls.some((call) => call.startsWith('DELETE') || call.endsWith('/stop')),
      `bob's container was touched: ${engine.calls.join('\n')}`,
    );
    assert.equal(engine.containers.get(id)?.running, true);
  } finally {
    await engine.close();
  }
});

test('a saved name that now names another server’s container (labelled for it) is neither polled nor stopped', async () => {
  // alice's default server saved jupyter-alice and its hub died before the create; her server
  // 'Other' (a name_template without {servername}) holds that name now.
  const engine = await fakeEngine((req, res) => {
    if (req.method === 'GET' && req.url?.includes('/containers/jupyter-alice/json')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          Id: id,
          Name: '/jupyter-alice',
          Config: { Labels: { 'org.jupyter.hub.user': 'alice', 'org.jupyter.hub.server': 'Other' } },
          State: { Running: true, Status: 'running' },
        }),
      );
      return true;
    }
    return false;
  });
  try {
    engine.containers.set(id, { running: true });
    assert.equal(await spawnerOn(engine, {}, { object_name: 'jupyter-alice' }).poll(), 0);
    await spawnerOn(engine, {}, { object_name: 'jupyter-alice' }).stop(true);
    assert.ok(
      !engine.calls.some((call) => call.startsWith('DELETE') || call.endsWith('/stop')),
      `the other server's container was touched: ${engine.calls.join('\n')}`,
    );
    assert.equal(engine.containers.get(id)?.running, true);
  } finally {
    await engine.close();
  }
});
