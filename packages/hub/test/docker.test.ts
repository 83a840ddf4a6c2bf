// The Docker spawner against a real Docker Engine (the test helper's dockerd, host network):
// Debian's stock jupyterhub-singleuser in a container per server, reached through our proxy, the
// user's named volume kept across stop and start, re-attached after a hub restart; and the
// failures a person must be able to read (engine down, image missing, port clash).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Dockerd, freePort, singleuserImage, startDockerd, waitFor } from '@seahorse/runtime/testing';
import { signIn, startTestHub, type TestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

let engine: Dockerd;
let image = '';
// Names of this run: containers and volumes of earlier runs on the shared engine never collide.
const run = `sh${process.pid}`;

before(async () => {
  engine = await startDockerd();
  image = (await singleuserImage(engine)).tag;
});

after(async () => {
  if (!engine) return;
  // Whatever a failed test left: this run's containers, then its volumes.
  const listed = await engine.request('GET', '/containers/json?all=1');
  for (const container of listed.json<Array<{ Id: string; Names: string[] }>>()) {
    if (container.Names.some((name) => name.startsWith(`/${run}-`))) {
      await engine.request('DELETE', `/containers/${container.Id}?force=1`);
    }
  }
  const volumes = (await engine.request('GET', '/volumes')).json<{
    Volumes: Array<{ Name: string }> | null;
  }>();
  for (const volume of volumes.Volumes ?? []) {
    if (volume.Name.startsWith(`${run}-`)) await engine.request('DELETE', `/volumes/${volume.Name}`);
  }
  await engine.stop();
});

function dockerTraits(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    'JupyterHub.spawner_class': 'dockerspawner.DockerSpawner',
    'JupyterHub.allow_named_servers': true,
    'JupyterHub.slow_spawn_timeout': 0.1,
    'Authenticator.allow_all': true,
    'DockerSpawner.image': image,
    'DockerSpawner.network_name': 'host',
    'DockerSpawner.prefix': run,
    'DockerSpawner.remove': true,
    // The seed's volume, named for this run.
    'DockerSpawner.volumes': { [`${run}-user-{username}`]: '/home/jovyan' },
    'Spawner.start_timeout': 120,
    'Spawner.http_timeout': 90,
    ...extra,
  };
}

async function startHub(extra: Record<string, unknown> = {}, dir?: string): Promise<TestHub> {
  process.env.DOCKER_HOST = engine.host;
  return startTestHub(dockerTraits(extra), { spawnerFactory: 'configured', ...(dir ? { dir } : {}) });
}

async function userModel(hub: TestHub, user: string): Promise<Json> {
  return (await (await hub.api(`/users/${user}`)).json()) as Json;
}

/** Starts the user's (named) server and waits until it is ready or failed; returns the user model. */
async function spawn(hub: TestHub, user: string, server = ''): Promise<Json> {
  const path = server ? `/users/${user}/servers/${server}` : `/users/${user}/server`;
  const started = await hub.api(path, { method: 'POST' });
  assert.ok([201, 202, 500].includes(started.status), `start: ${started.status} ${await started.text()}`);
  return waitFor(
    `${user}'s spawn to finish`,
    async () => {
      const model = await userModel(hub, user);
      return model.servers[server]?.pending === 'spawn' || model.pending === 'spawn' ? undefined : model;
    },
    { timeoutMs: 150_000, intervalMs: 100 },
  );
}

async function stop(hub: TestHub, user: string, server = ''): Promise<void> {
  const path = server ? `/users/${user}/servers/${server}` : `/users/${user}/server`;
  const stopped = await hub.api(path, { method: 'DELETE' });
  assert.ok([202, 204].includes(stopped.status), `stop: ${stopped.status}`);
  await waitFor('the stop', async () => (await userModel(hub, user)).servers[server] === undefined, {
    timeoutMs: 60_000,
    intervalMs: 100,
  });
}

async function token(hub: TestHub, user: string): Promise<string> {
  const created = (await (await hub.api(`/users/${user}/tokens`, { method: 'POST' })).json()) as Json;
  return created.token as string;
}

async function container(name: string): Promise<Json | undefined> {
  const answer = await engine.request('GET', `/containers/${name}/json`);
  return answer.status === 404 ? undefined : (answer.json() as Json);
}

test('servers run stock jupyterhub-singleuser in containers reached through the proxy; a named volume keeps a user’s files across stop and start, and users see only their own', async (t) => {
  const hub = await startHub();
  try {
    await hub.api('/users/alice', { method: 'POST' });
    await hub.api('/users/bob', { method: 'POST' });
    const [aliceToken, bobToken] = [await token(hub, 'alice'), await token(hub, 'bob')];
    const began = performance.now();
    const [alice, bob] = await Promise.all([spawn(hub, 'alice'), spawn(hub, 'bob')]);
    const spawnMs = performance.now() - began;
    assert.equal(alice.server, '/user/alice/', hub.logs.text.slice(-3000));
    assert.equal(bob.server, '/user/bob/', hub.logs.text.slice(-3000));
    const state = alice.servers[''].state as Json;
    assert.equal(state.object_name, `${run}-alice`);
    assert.match(state.object_id, /^[0-9a-f]{64}$/);
    const inspected = (await container(`${run}-alice`))!;
    assert.equal(inspected.Id, state.object_id);
    assert.equal(inspected.Config.Labels['org.jupyter.hub.user'], 'alice');
    assert.deepEqual(
      inspected.Mounts.map((mount: Json) => [mount.Type, mount.Name, mount.Destination]),
      [['volume', `${run}-user-alice`, '/home/jovyan']],
    );
    assert.ok(inspected.Config.Env.includes(`JUPYTER_IMAGE_SPEC=${image}`));

    const contents = (user: string, userToken: string, file = '') =>
      fetch(`${hub.proxyUrl}/user/${user}/api/contents/${file}`, {
        headers: { authorization: `token ${userToken}` },
      });
    const status = await fetch(`${hub.proxyUrl}/user/alice/api/status`, {
      headers: { authorization: `token ${aliceToken}` },
    });
    assert.equal(status.status, 200, await status.clone().text());
    const put = await fetch(`${hub.proxyUrl}/user/alice/api/contents/note.txt`, {
      method: 'PUT',
      headers: { authorization: `token ${aliceToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'file', format: 'text', content: 'written by alice' }),
    });
    assert.ok([200, 201].includes(put.status), await put.text());
    // Bob's server has his own (empty) home; alice's file is not there.
    const bobFiles = (await (await contents('bob', bobToken)).json()) as Json;
    assert.deepEqual(
      bobFiles.content.map((entry: Json) => entry.name).filter((name: string) => !name.startsWith('.')),
      [],
    );
    assert.equal((await contents('bob', bobToken, 'note.txt')).status, 404);
    // Alice's token does not open bob's server.
    const foreign = await fetch(`${hub.proxyUrl}/user/bob/api/status`, {
      headers: { authorization: `token ${aliceToken}` },
      redirect: 'manual',
    });
    assert.equal(foreign.status, 403);

    await stop(hub, 'alice');
    assert.equal(await container(`${run}-alice`), undefined, 'remove: the stopped container is removed');
    const again = await spawn(hub, 'alice');
    assert.equal(again.server, '/user/alice/', hub.logs.text.slice(-3000));
    assert.notEqual(again.servers[''].state.object_id, state.object_id, 'a new container');
    const note = (await (await contents('alice', aliceToken, 'note.txt')).json()) as Json;
    assert.equal(note.content, 'written by alice');

    // A named server: its own container, the same user volume.
    const named = await spawn(hub, 'alice', 'lab');
    assert.equal(named.servers.lab.url, '/user/alice/lab/', hub.logs.text.slice(-3000));
    assert.equal(named.servers.lab.state.object_name, `${run}-alice--lab`);
    const labNote = await fetch(`${hub.proxyUrl}/user/alice/lab/api/contents/note.txt`, {
      headers: { authorization: `token ${aliceToken}` },
    });
    assert.equal(((await labNote.json()) as Json).content, 'written by alice');
    await Promise.all([stop(hub, 'alice'), stop(hub, 'alice', 'lab'), stop(hub, 'bob')]);
    t.diagnostic(`two containers ready in ${Math.round(spawnMs)} ms`);
  } finally {
    await hub.close();
  }
});

test('a restarted hub re-attaches to the running container and stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-docker-restart-'));
  // The server asks the hub about tokens at the URL it was given: the new hub listens there too.
  const traits = {
    'JupyterHub.cleanup_servers': false,
    'JupyterHub.cleanup_proxy': false,
    'JupyterHub.hub_bind_url': `http://127.0.0.1:${await freePort()}`,
  };
  const first = await startHub(traits, dir);
  let second: TestHub | undefined;
  try {
    await first.api('/users/carol', { method: 'POST' });
    const model = await spawn(first, 'carol');
    assert.equal(model.server, '/user/carol/', first.logs.text.slice(-3000));
    const id = model.servers[''].state.object_id as string;
    await first.stop('simulated crash');
    assert.equal((await container(id))?.State.Running, true, 'the container outlives the hub');
    second = await startHub(
      {
        ...traits,
        'JupyterHub.bind_url': first.config.bindUrl.href,
        'ConfigurableHTTPProxy.api_url': first.config.proxy.apiUrl,
      },
      dir,
    );
    const after = await userModel(second, 'carol');
    assert.equal(after.servers[''].ready, true);
    assert.equal(after.servers[''].state.object_id, id);
    const carolToken = await token(second, 'carol');
    const status = await fetch(`${second.proxyUrl}/user/carol/api/status`, {
      headers: { authorization: `token ${carolToken}` },
    });
    assert.equal(status.status, 200);
    await stop(second, 'carol');
    assert.equal(await container(id), undefined);
  } finally {
    await second?.close();
    await first.proxyProcess?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The failure as the API (a fast failure is a 500 that says why), the progress stream and the spawn-pending page show it. */
async function failure(hub: TestHub, user: string): Promise<{ api: string; progress: string; page: string }> {
  await hub.api(`/users/${user}`, { method: 'POST' });
  const started = await hub.api(`/users/${user}/server`, { method: 'POST' });
  const api = await started.text();
  assert.equal(started.status, 500, api);
  const progress = await (await hub.api(`/users/${user}/server/progress`)).text();
  const cookie = await signIn(hub.url, user, 'any');
  const page = await (await fetch(`${hub.url}/hub/spawn-pending/${user}`, { headers: { cookie } })).text();
  return { api, progress, page };
}

// Errors come back within the request: the hub waits for them instead of answering 202.
const answerFailures = { 'JupyterHub.slow_spawn_timeout': 60 };

test('an engine that does not answer is named in the API, the progress stream and the page', async () => {
  process.env.DOCKER_HOST = `unix://${join(tmpdir(), `${run}-no-engine.sock`)}`;
  // The spawner reads DOCKER_HOST when the hub starts.
  const down = await startTestHub(dockerTraits(answerFailures), { spawnerFactory: 'configured' });
  process.env.DOCKER_HOST = engine.host;
  try {
    const seen = await failure(down, 'dave');
    for (const text of [seen.api, seen.progress, seen.page]) {
      assert.match(text, /Docker Engine unavailable at unix:\/\/.*no-engine\.sock \(ENOENT\)/);
    }
  } finally {
    await down.close();
  }
});

test('a missing image and a taken port are named', async () => {
  const missing = await startHub({
    ...answerFailures,
    'DockerSpawner.image': `${run}/missing:none`,
    'DockerSpawner.pull_policy': 'never',
  });
  try {
    const seen = await failure(missing, 'erin');
    assert.match(seen.page, /image missing: &quot;sh\d+\/missing:none&quot; is not on the Docker Engine/);
    assert.match(seen.api, /image missing/);
    assert.match(seen.progress, /image missing/);
  } finally {
    await missing.close();
  }
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as { port: number }).port;
  const clash = await startHub({ ...answerFailures, 'DockerSpawner.port': port });
  try {
    const seen = await failure(clash, 'frank');
    for (const text of [seen.api, seen.progress, seen.page]) {
      assert.match(text, new RegExp(`port clash: port ${port} on 127.0.0.1 is in use`));
    }
    assert.equal(await container(`${run}-frank`), undefined);
  } finally {
    await clash.close();
    holder.close();
  }
});
