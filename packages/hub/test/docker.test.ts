// The Docker spawner against a real Docker Engine (the test helper's dockerd, host network):
// Debian's stock jupyterhub-singleuser in a container per server, reached through our proxy, the
// user's named volume kept across stop and start, re-attached after a hub restart; and the
// failures a person must be able to read (engine down, image missing, port clash).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import {
  type Dockerd,
  freePort,
  ManagedProcess,
  singleuserImage,
  startDockerd,
  waitFor,
} from '@seahorse/runtime/testing';
import { findSpawner } from '../src/db/spawners.ts';
import { findUser } from '../src/db/users.ts';
import { repoRoot, signIn, startTestHub, type TestHub } from './helpers.ts';

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

/** The sign-in cookie and the `_xsrf` field of `path`'s form. */
async function formOf(
  hub: TestHub,
  user: string,
  path: string,
): Promise<{ cookie: string; xsrf: string; page: string }> {
  const cookie = await signIn(hub.url, user, 'any');
  const page = await (await fetch(`${hub.url}${path}`, { headers: { cookie } })).text();
  const xsrf = /name="_xsrf" value="([^"]+)"/.exec(page)?.[1];
  assert.ok(xsrf, page);
  return { cookie, xsrf, page };
}

test('allowed_images: the spawn form offers its names and the choice runs its image; an image outside it is refused with 400 naming the allowed ones', async () => {
  // A second name for the same image: the choice shows in the container without a second build.
  const other = `${run}-other:1`;
  const tagged = await engine.request(
    'POST',
    `/images/${encodeURIComponent(image)}/tag?repo=${run}-other&tag=1`,
  );
  assert.equal(tagged.status, 201);
  const hub = await startHub({ 'DockerSpawner.allowed_images': { Standard: image, 'Other <build>': other } });
  try {
    await hub.api('/users/judy', { method: 'POST' });
    // The API: a name outside the list, or an image behind a name, is refused before anything starts.
    for (const asked of ['evil/miner:latest', other]) {
      const refused = await hub.api('/users/judy/server', {
        method: 'POST',
        body: JSON.stringify({ image: asked }),
      });
      assert.equal(refused.status, 400);
      assert.equal(
        ((await refused.json()) as Json).message,
        `Image ${asked} not in allowed list: Standard, Other <build>`,
      );
    }
    assert.equal((await userModel(hub, 'judy')).servers[''], undefined, 'nothing started');
    assert.equal(await container(`${run}-judy`), undefined);

    // The pages: Start leads to the form, which offers the names (escaped) in an `image` field.
    const { cookie, xsrf, page } = await formOf(hub, 'judy', '/hub/spawn/judy');
    const home = await (await fetch(`${hub.url}/hub/home`, { headers: { cookie } })).text();
    assert.match(home, /<a class="button" href="\/hub\/spawn\/judy">Start my server<\/a>/);
    assert.match(page, /<label for="image">Select an image:<\/label>/);
    assert.match(page, /<select name="image" id="image" required>/);
    assert.match(page, /<option value="Standard">Standard<\/option>/);
    assert.match(page, /<option value="Other &lt;build&gt;">Other &lt;build&gt;<\/option>/);
    const post = (fields: Record<string, string>) =>
      fetch(`${hub.url}/hub/spawn/judy`, {
        method: 'POST',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ _xsrf: xsrf, ...fields }),
        redirect: 'manual',
      });
    const forged = await post({ image: 'evil/miner:latest' });
    assert.equal(forged.status, 400);
    assert.match(
      await forged.text(),
      /Image evil\/miner:latest not in allowed list: Standard, Other &lt;build&gt;/,
    );
    const chosen = await post({ image: 'Other <build>' });
    assert.equal(chosen.status, 302, await chosen.text());
    const model = await waitFor(
      "judy's spawn to finish",
      async () => {
        const now = await userModel(hub, 'judy');
        return now.servers['']?.pending === 'spawn' ? undefined : now;
      },
      { timeoutMs: 150_000, intervalMs: 100 },
    );
    assert.equal(model.server, '/user/judy/', hub.logs.text.slice(-3000));
    assert.deepEqual(model.servers[''].user_options, { image: 'Other <build>' });
    const inspected = (await container(`${run}-judy`))!;
    assert.equal(inspected.Config.Image, other);
    assert.ok(inspected.Config.Env.includes(`JUPYTER_IMAGE_SPEC=${other}`));
    await stop(hub, 'judy');
  } finally {
    await hub.close();
    await engine.request('DELETE', `/images/${encodeURIComponent(other)}`);
  }
  // One allowed image: no form (Start starts at once); asking for another is still refused.
  const one = await startHub({ 'DockerSpawner.allowed_images': [image] });
  try {
    await one.api('/users/judy', { method: 'POST' });
    const { page } = await formOf(one, 'judy', '/hub/home');
    assert.match(page, /<form method="post" action="\/hub\/spawn\/judy" class="inline">/);
    const refused = await one.api('/users/judy/server', {
      method: 'POST',
      body: JSON.stringify({ image: 'evil/miner:latest' }),
    });
    assert.equal(refused.status, 400);
    assert.equal(
      ((await refused.json()) as Json).message,
      `Image evil/miner:latest not in allowed list: ${image}`,
    );
  } finally {
    await one.close();
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

test('a server that exits while starting fails the spawn with its last output; its container is stopped', async () => {
  const hub = await startHub({
    ...answerFailures,
    'DockerSpawner.remove': false,
    'Spawner.cmd': ['sh', '-c', 'echo "cannot start: no notebook here"; exit 3'],
  });
  try {
    const seen = await failure(hub, 'ivan');
    assert.match(seen.api, /exited with code 3 before it answered HTTP.*\\ncannot start: no notebook here/);
    assert.match(seen.page, /cannot start: no notebook here/);
    const left = await container(`${run}-ivan`);
    assert.equal(left?.State.Running, false, 'remove=false keeps the stopped container until the next start');
  } finally {
    await hub.close();
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

test('extra_host_config binds rendered from a raw name that would add a field refuse the start; nothing is created', async () => {
  const hub = await startHub({
    ...answerFailures,
    'DockerSpawner.extra_host_config': {
      binds: [`/tmp/${run}-{raw_username}:/data`],
      mounts: [{ type: 'bind', source: `/tmp/${run}-{raw_username}`, target: '/srv' }],
    },
  });
  try {
    // 'eve:ro' renders /tmp/…-eve:ro:/data: its ':' would make 'ro' the target.
    const seen = await failure(hub, 'eve:ro');
    for (const text of [seen.api, seen.progress]) {
      assert.match(
        text,
        /DockerSpawner.extra_host_config rendered for this server: binds: \\?"\/tmp\/sh\d+-eve:ro:\/data\\?" is not source:target\[:mode\]/,
      );
    }
    const listed = (await engine.request('GET', '/containers/json?all=1')).json<Json[]>();
    assert.deepEqual(
      listed.filter((c) => c.Labels?.['org.jupyter.hub.user'] === 'eve:ro'),
      [],
      'no container was created',
    );
  } finally {
    await hub.close();
  }
});

test('extra_host_config binds given as a mapping render their keys, as DockerSpawner does: each user mounts a host path of their own', async () => {
  // The host path is the mapping's key: left as written, every user would mount the literal /tmp/…-{username}.
  const hub = await startHub({
    'DockerSpawner.extra_host_config': {
      binds: { [`/tmp/${run}-binds-{username}`]: { bind: '/data', mode: 'ro' } },
    },
  });
  try {
    await hub.api('/users/kim', { method: 'POST' });
    await hub.api('/users/lee', { method: 'POST' });
    const [kim, lee] = await Promise.all([spawn(hub, 'kim'), spawn(hub, 'lee')]);
    assert.equal(kim.server, '/user/kim/', hub.logs.text.slice(-3000));
    assert.equal(lee.server, '/user/lee/', hub.logs.text.slice(-3000));
    for (const user of ['kim', 'lee']) {
      const inspected = (await container(`${run}-${user}`))!;
      assert.deepEqual(inspected.HostConfig.Binds, [`/tmp/${run}-binds-${user}:/data:ro`]);
    }
    await Promise.all([stop(hub, 'kim'), stop(hub, 'lee')]);
  } finally {
    await hub.close();
    for (const user of ['kim', 'lee', '{username}'])
      rmSync(`/tmp/${run}-binds-${user}`, { recursive: true, force: true });
  }
});

test('a named server whose container name another running server holds (names differing only in case) is refused; the other keeps running', async () => {
  // DockerSpawner lower-cases {servername}: 'Lab' and 'lab' both render …-mia--lab.
  const hub = await startHub(answerFailures);
  try {
    await hub.api('/users/mia', { method: 'POST' });
    const first = await spawn(hub, 'mia', 'Lab');
    assert.equal(first.servers.Lab.url, '/user/mia/Lab/', hub.logs.text.slice(-3000));
    const held = first.servers.Lab.state as Json;
    assert.equal(held.object_name, `${run}-mia--lab`);
    const started = await hub.api('/users/mia/servers/lab', { method: 'POST' });
    const said = await started.text();
    assert.equal(started.status, 500, said);
    assert.match(
      said,
      new RegExp(
        `the container name ${run}-mia--lab is taken by \\\\"mia\\\\"'s server \\\\"Lab\\\\", which is running: .*make name_template tell them apart`,
      ),
    );
    const kept = (await container(held.object_id))!;
    assert.equal(kept.State.Running, true, "Lab's container was not touched");
    const model = await userModel(hub, 'mia');
    assert.equal(model.servers.Lab.ready, true);
    assert.equal(model.servers.lab, undefined);
    await stop(hub, 'mia', 'Lab');
  } finally {
    await hub.close();
  }
});

/**
 * A registry (the v2 API's three reads) serving one image on loopback, which dockerd treats as
 * an insecure registry: the image is a 2 MB layer imported into the engine and saved back out.
 */
async function startRegistry(dir: string): Promise<{ port: number; close(): Promise<void> }> {
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs, { recursive: true });
  writeFileSync(join(rootfs, 'payload'), randomBytes(2 * 1024 * 1024));
  const tar = spawnSync('tar', ['-C', rootfs, '-cf', '-', '.'], { maxBuffer: 16 * 1024 * 1024 }).stdout;
  const source = `${run}-pull-source:1`;
  const imported = await engine.request(
    'POST',
    `/images/create?fromSrc=-&repo=${run}-pull-source&tag=1`,
    tar,
  );
  assert.equal(imported.status, 200, imported.body.toString());
  const saved = await engine.request('GET', `/images/${source}/get`);
  await engine.request('DELETE', `/images/${source}?force=1`);
  const out = join(dir, 'saved');
  mkdirSync(out);
  writeFileSync(join(dir, 'saved.tar'), saved.body);
  assert.equal(spawnSync('tar', ['-C', out, '-xf', join(dir, 'saved.tar')]).status, 0);
  const [entry] = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Array<{
    Config: string;
    Layers: string[];
  }>;
  const digest = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const config = readFileSync(join(out, entry!.Config));
  const layer = gzipSync(readFileSync(join(out, entry!.Layers[0]!)));
  const blobs = new Map([
    [digest(config), config],
    [digest(layer), layer],
  ]);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: {
        mediaType: 'application/vnd.docker.container.image.v1+json',
        size: config.length,
        digest: digest(config),
      },
      layers: [
        {
          mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
          size: layer.length,
          digest: digest(layer),
        },
      ],
    }),
  );
  const server = createHttpServer((req, res) => {
    const url = req.url ?? '';
    const send = (
      status: number,
      body: Buffer,
      type = 'application/octet-stream',
      extra: Record<string, string> = {},
    ) => {
      res.writeHead(status, { 'content-type': type, 'content-length': body.length, ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (url === '/v2/') return send(200, Buffer.from('{}'), 'application/json');
    if (/^\/v2\/seahorse\/pulltest\/manifests\//.test(url)) {
      return send(200, manifest, 'application/vnd.docker.distribution.manifest.v2+json', {
        'docker-content-digest': digest(manifest),
      });
    }
    const blob = /^\/v2\/seahorse\/pulltest\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url);
    const data = blob ? blobs.get(blob[1]!) : undefined;
    if (data) return send(200, data, 'application/octet-stream', { 'docker-content-digest': blob![1]! });
    send(404, Buffer.from('{"errors":[{"code":"NAME_UNKNOWN"}]}'), 'application/json');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        // dockerd keeps its connections alive: close them, or the test process never ends.
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

test('a pull’s progress is in the spawn’s progress stream; an image that cannot be pulled is named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-docker-pull-'));
  const registry = await startRegistry(dir);
  try {
    const pulled = `127.0.0.1:${registry.port}/seahorse/pulltest:1`;
    const hub = await startHub({
      ...answerFailures,
      'DockerSpawner.image': pulled,
      'DockerSpawner.pull_policy': 'always',
    });
    try {
      // The image has no program to run: the spawn fails after the pull, which is what is checked.
      const seen = await failure(hub, 'grace');
      assert.match(seen.api, /No command specified/);
      // The progress the stream sent while the spawn ran, as the database kept it.
      const owner = (await findUser(hub.db, 'grace'))!;
      const row = (await findSpawner(hub.db, owner.id, ''))!;
      const messages = (JSON.parse(row.progress) as Array<{ message: string }>).map((event) => event.message);
      const all = messages.join('\n');
      assert.ok(messages.includes(`Pulling image ${pulled}`), all);
      assert.ok(
        messages.some(
          (message) => message.startsWith(`Pulling image ${pulled}: `) && /complete/i.test(message),
        ),
        all,
      );
      assert.ok(messages.includes(`Pulled image ${pulled}`), all);
      assert.equal((await engine.request('GET', `/images/${pulled}/json`)).status, 200);
    } finally {
      await hub.close();
      await engine.request('DELETE', `/images/${pulled}?force=1`);
    }
    const unreachable = await startHub({
      ...answerFailures,
      'DockerSpawner.image': `127.0.0.1:${registry.port}/seahorse/absent:1`,
    });
    try {
      const seen = await failure(unreachable, 'heidi');
      assert.match(seen.api, /image missing: .*absent:1.* is not on the Docker Engine and pulling it failed/);
    } finally {
      await unreachable.close();
    }
  } finally {
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A CA, and certificates it signs: the engine's (IP 127.0.0.1, serverAuth) and a client's (clientAuth). */
function makeCertificates(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]) => {
    const result = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    assert.equal(result.status, 0, `openssl ${args.join(' ')}: ${result.stderr}`);
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...key,
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=seahorse test CA',
  );
  for (const [name, extensions] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(join(dir, `${name}.ext`), extensions);
    openssl('req', ...key, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca-key.pem',
      '-CAcreateserial',
      '-out',
      `${name}-cert.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
}

/** One request over a unix socket (the TLS engine's own, for the test's setup and checks). */
function unixRequest(
  socket: string,
  method: string,
  path: string,
  body?: Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: socket, method, path, headers: { host: 'docker' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('DOCKER_HOST=tcp:// with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH: a server spawned on an engine that demands TLS client certificates; a wrong CA and a missing client certificate are named', async () => {
  // A second dockerd of its own (the shared one has no TCP listener): dockerd -H tcp://127.0.0.1:PORT --tlsverify.
  const dir = mkdtempSync(join(tmpdir(), 'hub-docker-tls-'));
  const certs = join(dir, 'certs');
  makeCertificates(certs);
  // What a user's DOCKER_CERT_PATH holds: ca.pem, cert.pem, key.pem.
  const userCerts = join(dir, 'user');
  mkdirSync(userCerts);
  writeFileSync(join(userCerts, 'ca.pem'), readFileSync(join(certs, 'ca.pem')));
  writeFileSync(join(userCerts, 'cert.pem'), readFileSync(join(certs, 'client-cert.pem')));
  writeFileSync(join(userCerts, 'key.pem'), readFileSync(join(certs, 'client-key.pem')));
  const port = await freePort();
  const socket = join(dir, 'd.sock');
  const dockerd = new ManagedProcess('dockerd (TLS)', '/usr/sbin/dockerd', [
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--storage-driver=vfs',
    `--data-root=${join(dir, 'data')}`,
    `--exec-root=${join(dir, 'exec')}`,
    `--pidfile=${join(dir, 'dockerd.pid')}`,
    `--host=unix://${socket}`,
    `--host=tcp://127.0.0.1:${port}`,
    '--tlsverify',
    `--tlscacert=${join(certs, 'ca.pem')}`,
    `--tlscert=${join(certs, 'server-cert.pem')}`,
    `--tlskey=${join(certs, 'server-key.pem')}`,
    '--shutdown-timeout=2',
  ]);
  const saved = { ...process.env };
  const hubOn = async (env: Record<string, string>, extra: Record<string, unknown> = {}) => {
    Object.assign(process.env, { DOCKER_HOST: `tcp://127.0.0.1:${port}` }, env);
    try {
      return await startTestHub(dockerTraits({ ...answerFailures, ...extra }), {
        spawnerFactory: 'configured',
      });
    } finally {
      for (const key of ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  };
  try {
    await dockerd.untilReady(
      waitFor(
        'the TLS dockerd',
        async () =>
          (await unixRequest(socket, 'GET', '/_ping').catch(() => undefined))?.status === 200
            ? true
            : undefined,
        {
          timeoutMs: 60_000,
          intervalMs: 100,
        },
      ),
    );
    // The server image: this node binary and its libraries, nothing else (a few seconds to import).
    const rootfs = join(dir, 'rootfs');
    const files = [
      process.execPath,
      ...[...spawnSync('ldd', [process.execPath], { encoding: 'utf8' }).stdout.matchAll(/(\/\S+) \(0x/g)].map(
        (m) => m[1]!,
      ),
    ];
    for (const file of files) {
      const target = join(rootfs, file === process.execPath ? '/node' : file);
      mkdirSync(join(target, '..'), { recursive: true });
      writeFileSync(target, readFileSync(file), { mode: 0o755 });
    }
    mkdirSync(join(rootfs, 'tmp'));
    const tar = spawnSync('tar', ['-C', rootfs, '-cf', '-', '.'], { maxBuffer: 512 * 1024 * 1024 }).stdout;
    const imported = await unixRequest(
      socket,
      'POST',
      `/v1.41/images/create?fromSrc=-&repo=${run}-node&tag=1`,
      tar,
    );
    assert.equal(imported.status, 200, imported.text);
    const serverCmd = [
      '/node',
      '-e',
      "require('http').createServer((q, s) => s.end('served from the TLS engine')).listen(new URL(process.env.JUPYTERHUB_SERVICE_URL).port, '127.0.0.1')",
    ];
    const traits = {
      'DockerSpawner.image': `${run}-node:1`,
      'DockerSpawner.volumes': {},
      'Spawner.cmd': serverCmd,
    };

    const hub = await hubOn({ DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: userCerts }, traits);
    try {
      await hub.api('/users/kim', { method: 'POST' });
      const model = await spawn(hub, 'kim');
      assert.equal(model.server, '/user/kim/', hub.logs.text.slice(-3000));
      const id = model.servers[''].state.object_id as string;
      const inspected = await unixRequest(socket, 'GET', `/v1.41/containers/${id}/json`);
      assert.equal(inspected.status, 200, 'the container is on the TLS engine');
      assert.equal((JSON.parse(inspected.text) as Json).State.Running, true);
      assert.equal(await container(id), undefined, 'not on the shared engine');
      const kimToken = await token(hub, 'kim');
      const served = await fetch(`${hub.proxyUrl}/user/kim/`, {
        headers: { authorization: `token ${kimToken}` },
      });
      assert.equal(await served.text(), 'served from the TLS engine');
      await stop(hub, 'kim');
      assert.equal((await unixRequest(socket, 'GET', `/v1.41/containers/${id}/json`)).status, 404, 'removed');
    } finally {
      await hub.close();
    }

    // A CA that did not sign the engine's certificate: refused by the hub, naming DOCKER_CERT_PATH.
    const wrong = join(dir, 'wrong');
    makeCertificates(wrong);
    const wrongCa = join(dir, 'wrong-ca');
    mkdirSync(wrongCa);
    writeFileSync(join(wrongCa, 'ca.pem'), readFileSync(join(wrong, 'ca.pem')));
    writeFileSync(join(wrongCa, 'cert.pem'), readFileSync(join(certs, 'client-cert.pem')));
    writeFileSync(join(wrongCa, 'key.pem'), readFileSync(join(certs, 'client-key.pem')));
    const distrusting = await hubOn({ DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: wrongCa }, traits);
    try {
      const seen = await failure(distrusting, 'lee');
      for (const text of [seen.api, seen.progress, seen.page]) {
        assert.match(
          text,
          new RegExp(
            `Docker Engine at tcp://127\\.0\\.0\\.1:${port} refused over TLS: the engine(?:'|&#39;)s certificate is not signed by the CA in DOCKER_CERT_PATH \\(${wrongCa}\\): ${wrongCa}/ca\\.pem \\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)\\)`,
          ),
        );
      }
    } finally {
      await distrusting.close();
    }
    // The engine's CA but no client certificate: the engine refuses, and the message says so.
    const caOnly = join(dir, 'ca-only');
    mkdirSync(caOnly);
    writeFileSync(join(caOnly, 'ca.pem'), readFileSync(join(certs, 'ca.pem')));
    const anonymous = await hubOn({ DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: caOnly }, traits);
    try {
      const seen = await failure(anonymous, 'max');
      assert.match(
        seen.api,
        /refused over TLS: the engine .*without a client certificate.*DOCKER_CERT_PATH \(.*\) has no cert\.pem and key\.pem/,
      );
    } finally {
      await anonymous.close();
    }
    // Plain HTTP to the TLS port (DOCKER_HOST alone, as the docker CLI would send it): the engine's own words.
    const plain = await hubOn({}, traits);
    try {
      const seen = await failure(plain, 'ned');
      assert.match(seen.api, /Client sent an HTTP request to an HTTPS server/);
    } finally {
      await plain.close();
    }
  } finally {
    await dockerd.stop('SIGTERM', 20_000);
    // dockerd leaves its network namespace mounted in the exec root (exec/netns/default).
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((path) => path.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const path of mounts) spawnSync('umount', [path]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hub killed the moment the engine created its container: the restarted hub finds the container by the name saved before and removes it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-docker-orphan-'));
  const [hubPort, proxyPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const token = 'orphan-docker-admin-token-0123456789';
  writeFileSync(
    join(dir, 'hub.yaml'),
    [
      'JupyterHub:',
      '  spawner_class: DockerSpawner',
      `  hub_bind_url: http://127.0.0.1:${hubPort}`,
      `  bind_url: http://127.0.0.1:${proxyPort}`,
      '  db_url: sqlite:///hub.sqlite',
      '  authenticator_class: dummy',
      '  cleanup_servers: false',
      `  services: [{name: admin, api_token: ${token}, admin: true}]`,
      'ConfigurableHTTPProxy:',
      `  api_url: http://127.0.0.1:${apiPort}`,
      'DockerSpawner:',
      `  image: ${image}`,
      '  network_name: host',
      `  prefix: ${run}o`,
      '  remove: true',
      '',
    ].join('\n'),
  );
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${hubPort}/hub/api${path}`, {
      ...init,
      headers: { authorization: `token ${token}` },
    });
  let proc: ManagedProcess | undefined;
  let stateAtCreate = '';
  // In front of the engine: the hub dies once the create is done, before it reads the answer.
  const front = createHttpServer((req, res) => {
    const upstream = httpRequest(
      { socketPath: engine.socket, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        if (req.method === 'POST' && req.url?.includes('/containers/create') && !stateAtCreate && proc) {
          proc.signal('SIGKILL');
          const db = new DatabaseSync(join(dir, 'hub.sqlite'), { readOnly: true });
          try {
            stateAtCreate = (
              db.prepare("SELECT state FROM spawners WHERE name = ''").get() as { state: string }
            ).state;
          } finally {
            db.close();
          }
        }
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const socket = join(dir, 'engine.sock');
  await new Promise<void>((resolve) => front.listen(socket, resolve));
  const start = () =>
    new ManagedProcess(
      'seahorse-hub',
      process.execPath,
      ['--conditions=seahorse-source', join(repoRoot, 'packages/hub/src/cli.ts'), '--config', 'hub.yaml'],
      {
        cwd: dir,
        env: { ...process.env, DOCKER_HOST: `unix://${socket}` },
      },
    );
  const name = `${run}o-zoe`;
  try {
    proc = start();
    await proc.untilReady(waitFor('hub', async () => (await api('/')).ok, { timeoutMs: 60_000 }));
    await api('/users/zoe', { method: 'POST' });
    await api('/users/zoe/server', { method: 'POST' }).catch(() => undefined);
    await proc.exited;
    assert.deepEqual(JSON.parse(stateAtCreate), { object_name: name }, 'the name saved before the create');
    assert.ok(await container(name), 'the container outlived its hub');
    proc = start();
    await proc.untilReady(waitFor('hub', async () => (await api('/')).ok, { timeoutMs: 60_000 }));
    await waitFor('the orphaned container removed', async () => (await container(name)) === undefined, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    const model = (await (await api('/users/zoe')).json()) as Json;
    assert.equal(model.server, null);
    assert.equal(model.pending, null);
  } finally {
    await proc?.stop();
    try {
      process.kill(Number(readFileSync(join(dir, 'jupyterhub-proxy.pid'), 'utf8')), 'SIGKILL');
    } catch {
      // stopped with the hub
    }
    front.closeAllConnections();
    await new Promise((resolve) => front.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
