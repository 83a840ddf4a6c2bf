// The whole hub with spawner_class KubeSpawner, our proxy, and the fake apiserver: a spawn
// through the REST API streams the pod's events as progress, the proxy reaches the "pod", a
// restarted hub re-attaches from the database and watches again, and a stop deletes the pod.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { createLogger, type Logger, type LogLevel } from '@seahorse/runtime';
import { LogCapture, waitFor } from '@seahorse/runtime/testing';
import { kubeSpawnerFactory } from '../src/parts.ts';
import { KubeClient } from '../src/spawners/kube-client.ts';
import type { KubeSpawnerView } from '../src/spawners/kube-objects.ts';
import type { BoundSpawnerFactory } from '../src/spawns.ts';
import { FakeApiServer } from './fake-apiserver.ts';
import { signIn, startTestHub, type TestHub, testConfig } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const namespace = 'jupyterhub';
const token = 'kubeconfig-user-token-0123456789';

interface KubeHub {
  hub: TestHub;
  fake: FakeApiServer;
  client: KubeClient;
  dir: string;
  /** All the traits the hub runs with, the defaults of startKubeHub among them. */
  traits: Record<string, unknown>;
  logs: LogCapture;
  log: Logger;
  /** The spawner factory a restarted hub makes: the configuration read again, a new client. */
  spawnerFactory(): Promise<BoundSpawnerFactory>;
  /** Stops the hub and its proxy, the clients, the fake apiserver and the notebook server; removes the directory. */
  close(): Promise<void>;
}

/**
 * A hub with KubeSpawner (events off unless `traits` turn them on) against a fake apiserver of
 * its own; the fake gives pods the IP 127.0.0.1, where a notebook server answers with its path.
 */
async function startKubeHub(traits: Record<string, unknown>, level: LogLevel = 'warn'): Promise<KubeHub> {
  const dir = mkdtempSync(join(tmpdir(), 'hub-kube-'));
  const notebook = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ path: req.url }));
  });
  await new Promise<void>((resolve) => notebook.listen(0, '127.0.0.1', resolve));
  const fake = new FakeApiServer({ token });
  const clients: KubeClient[] = [];
  const closeAllButHub = async () => {
    for (const client of clients) client.close();
    await fake.close();
    notebook.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const server = new URL(await fake.listen());
    const all = {
      'JupyterHub.spawner_class': 'KubeSpawner',
      'KubeSpawner.namespace': namespace,
      'KubeSpawner.port': (notebook.address() as AddressInfo).port,
      'KubeSpawner.events_enabled': false,
      ...traits,
    };
    const logs = new LogCapture();
    const log = createLogger({ name: 'hub', level, destination: logs });
    const spawnerFactory = async () => {
      const { config } = await testConfig(all, dir);
      const client = new KubeClient({ server, token, namespace });
      clients.push(client);
      return kubeSpawnerFactory(config, config.kube!, client, log);
    };
    const hub = await startTestHub(all, { dir, spawnerFactory: await spawnerFactory(), log });
    return {
      hub,
      fake,
      client: clients[0]!,
      dir,
      traits: all,
      logs,
      log,
      spawnerFactory,
      close: async () => {
        await hub.stop('test');
        await hub.proxyProcess?.stop();
        await closeAllButHub();
      },
    };
  } catch (error) {
    await closeAllButHub();
    throw error;
  }
}

test('a hub with KubeSpawner spawns a pod, streams its events, re-attaches after a restart, and deletes the pod on stop', async () => {
  const kube = await startKubeHub(
    {
      'JupyterHub.spawner_class': 'DynamicKubeSpawner',
      'JupyterHub.cleanup_servers': false,
      'JupyterHub.cleanup_proxy': false,
      'JupyterHub.slow_spawn_timeout': 0,
      'KubeSpawner.events_enabled': true,
      'KubeSpawner.start_timeout': 20,
      'KubeSpawner.volumes': [{ name: 'home', hostPath: { path: '/data/jupyterhub/{user}' } }],
      'KubeSpawner.volume_mounts': [{ name: 'home', mountPath: '/home/jovyan', readOnly: '{is_not_admin}' }],
      'JupyterHub.allow_named_servers': true,
      'KubeSpawner.profile_list': [
        { display_name: 'Standard Notebook', default: true },
        {
          display_name: 'GPU Notebook',
          kubespawner_override: {
            extra_pod_config: { runtimeClassName: 'nvidia' },
            extra_resource_guarantees: { 'nvidia.com/gpu': '1' },
            extra_resource_limits: { 'nvidia.com/gpu': '1' },
          },
        },
      ],
    },
    'debug',
  );
  const { hub: first, fake, logs } = kube;
  let second: Awaited<ReturnType<typeof startTestHub>> | undefined;
  try {
    await first.api('/users/alice', { method: 'POST' });
    assert.equal((await first.api('/users/alice/server', { method: 'POST' })).status, 202);
    const progress = await first.api('/users/alice/server/progress');
    assert.equal(progress.headers.get('content-type'), 'text/event-stream');
    const streamed = progress.text();
    // The scheduler and the kubelet, while the user watches the progress.
    await waitFor('the pod', () => fake.get('pods', namespace, 'jupyter-alice'));
    fake.event(namespace, 'jupyter-alice', 'Normal', 'Pulling', 'Pulling image "singleuser:main"');
    fake.setRunning(namespace, 'jupyter-alice');
    const stream = await streamed;
    assert.match(stream, /\[Normal\] Successfully assigned jupyterhub\/jupyter-alice to node-1/);
    assert.match(stream, /\[Normal\] Pulling image/);
    assert.match(stream, /"ready":true/);
    const model = (await (await first.api('/users/alice')).json()) as Json;
    assert.equal(model.servers[''].ready, true);
    assert.deepEqual(model.servers[''].state, {
      pod_name: 'jupyter-alice',
      namespace,
      dns_name: 'jupyter-alice.jupyterhub.svc.cluster.local',
    });
    const pod = fake.get('pods', namespace, 'jupyter-alice')!;
    assert.equal(pod.spec.volumes[0].hostPath.path, '/data/jupyterhub/alice');
    assert.equal(pod.spec.containers[0].volumeMounts[0].readOnly, true);
    const env = Object.fromEntries(pod.spec.containers[0].env.map((e: Json) => [e.name, e.value]));
    assert.equal(env.JUPYTERHUB_SERVICE_PREFIX, '/user/alice/');
    assert.equal(env.JUPYTERHUB_USER, 'alice');
    const through = await fetch(`${first.proxyUrl}/user/alice/api/status`);
    assert.equal(through.status, 200);

    // A named server with the GPU profile: its own pod, the profile's overrides in it.
    const named = await first.api('/users/alice/servers/big', {
      method: 'POST',
      body: JSON.stringify({ profile: 'gpu-notebook' }),
    });
    assert.equal(named.status, 202);
    await waitFor('the GPU pod', () => fake.get('pods', namespace, 'jupyter-alice--big'));
    fake.setRunning(namespace, 'jupyter-alice--big');
    await waitFor(
      'the named server ready',
      async () => ((await (await first.api('/users/alice')).json()) as Json).servers.big?.ready === true,
    );
    const gpu = fake.get('pods', namespace, 'jupyter-alice--big')!;
    assert.equal(gpu.spec.runtimeClassName, 'nvidia');
    assert.equal(gpu.spec.containers[0].resources.limits['nvidia.com/gpu'], '1');
    assert.equal(gpu.metadata.labels['hub.jupyter.org/servername'], 'big');
    assert.equal(pod.spec.runtimeClassName, undefined);
    assert.equal((await first.api('/users/alice/servers/big', { method: 'DELETE' })).status, 202);
    await waitFor(
      'the GPU pod deleted',
      () => fake.get('pods', namespace, 'jupyter-alice--big') === undefined,
    );
    const watchesBefore = fake.watchRequests('pods').length;

    await first.stop('simulated crash');
    assert.ok(fake.get('pods', namespace, 'jupyter-alice'), 'cleanup_servers false leaves the pod');
    second = await startTestHub(
      {
        ...kube.traits,
        'JupyterHub.bind_url': first.config.bindUrl.href,
        'ConfigurableHTTPProxy.api_url': first.config.proxy.apiUrl,
      },
      { dir: kube.dir, spawnerFactory: await kube.spawnerFactory(), log: kube.log },
    );
    const again = (await (await second.api('/users/alice')).json()) as Json;
    assert.equal(again.servers[''].ready, true);
    assert.ok(logs.has('re-attached to running server'));
    await waitFor(
      'the restarted hub watching the pods again',
      () => fake.watchRequests('pods').length === watchesBefore + 1,
    );
    assert.equal((await fetch(`${second.proxyUrl}/user/alice/api/status`)).status, 200);

    // 202: slow_spawn_timeout 0 answers before the stop is done.
    assert.equal((await second.api('/users/alice/server', { method: 'DELETE' })).status, 202);
    await waitFor('the pod deleted', () => fake.get('pods', namespace, 'jupyter-alice') === undefined);
    await waitFor(
      'the server stopped',
      async () => ((await (await second!.api('/users/alice')).json()) as Json).server === null,
    );
  } finally {
    await second?.close();
    await kube.close();
  }
});

test("a profile's start_timeout is the hub's spawn timeout too: a pod slower than Spawner.start_timeout but within its profile's starts", async () => {
  const kube = await startKubeHub({
    'JupyterHub.slow_spawn_timeout': 0,
    // The hub alone would give up after 1 + 1 s.
    'Spawner.start_timeout': 1,
    'Spawner.http_timeout': 1,
    'KubeSpawner.profile_list': [
      { display_name: 'Quick', default: true },
      { display_name: 'GPU', slug: 'gpu', kubespawner_override: { start_timeout: 30 } },
    ],
  });
  const { hub, fake } = kube;
  try {
    await hub.api('/users/bob', { method: 'POST' });
    const started = await hub.api('/users/bob/server', {
      method: 'POST',
      body: JSON.stringify({ profile: 'gpu' }),
    });
    assert.equal(started.status, 202);
    await waitFor('the pod', () => fake.get('pods', namespace, 'jupyter-bob'));
    // Longer than the hub's own 2 s: only the profile's 30 s lets this spawn live.
    await delay(2500);
    fake.setRunning(namespace, 'jupyter-bob');
    await waitFor(
      'the server ready',
      async () => ((await (await hub.api('/users/bob')).json()) as Json).servers['']?.ready === true,
    );
  } finally {
    await kube.close();
  }
});

test('delete_pvc: a stop keeps the PVC name in the database; removing a named server or deleting the user deletes its PVC', async () => {
  const kube = await startKubeHub({
    'JupyterHub.allow_named_servers': true,
    'KubeSpawner.storage_pvc_ensure': true,
    'KubeSpawner.storage_capacity': '1Gi',
  });
  const { hub, fake } = kube;
  const spawn = async (path: string, pod: string) => {
    const started = hub.api(path, { method: 'POST' });
    await waitFor(`pod ${pod}`, () => fake.get('pods', namespace, pod));
    fake.setRunning(namespace, pod);
    assert.equal((await started).status, 201);
  };
  try {
    await hub.api('/users/carol', { method: 'POST' });
    await spawn('/users/carol/server', 'jupyter-carol');
    await spawn('/users/carol/servers/lab', 'jupyter-carol--lab');
    assert.ok(fake.get('persistentvolumeclaims', namespace, 'claim-carol--lab'));
    assert.equal((await hub.api('/users/carol/server', { method: 'DELETE' })).status, 204);
    const row = await hub.db.get<{ state: string }>("SELECT state FROM spawners WHERE name = ''");
    assert.deepEqual(JSON.parse(row!.state), { pvc_name: 'claim-carol' });
    // A stop alone keeps the PVC; removing the named server deletes its own.
    assert.equal((await hub.api('/users/carol/servers/lab', { method: 'DELETE' })).status, 204);
    assert.ok(fake.get('persistentvolumeclaims', namespace, 'claim-carol--lab'));
    const removed = await hub.api('/users/carol/servers/lab', {
      method: 'DELETE',
      body: JSON.stringify({ remove: true }),
    });
    assert.equal(removed.status, 204);
    assert.equal(fake.get('persistentvolumeclaims', namespace, 'claim-carol--lab'), undefined);
    assert.ok(fake.get('persistentvolumeclaims', namespace, 'claim-carol'));
    // RBAC refusing the PVC delete: the user stays, to be deleted again once it is granted.
    fake.forbidden.add('delete persistentvolumeclaims');
    assert.equal((await hub.api('/users/carol', { method: 'DELETE' })).status, 500);
    assert.equal((await hub.api('/users/carol')).status, 200);
    fake.forbidden.delete('delete persistentvolumeclaims');
    // A start while the user's PVC is being deleted is refused: it would mount the PVC going
    // away, and run on after the user's row is gone.
    let held: http.ServerResponse | undefined;
    fake.intercept = (record, res) => {
      if (record.method !== 'DELETE' || !record.path.endsWith('/claim-carol')) return false;
      held = res;
      return true;
    };
    const deleting = hub.api('/users/carol', { method: 'DELETE' });
    await waitFor('the PVC delete in flight', () => held !== undefined);
    const pods = fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/pods')).length;
    assert.equal((await hub.api('/users/carol/server', { method: 'POST' })).status, 400);
    assert.equal(fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/pods')).length, pods);
    fake.intercept = undefined;
    held!.writeHead(503, { 'content-type': 'application/json' });
    held!.end(JSON.stringify({ kind: 'Status', code: 503, message: 'unavailable' }));
    assert.equal((await deleting).status, 204);
    assert.equal(fake.get('persistentvolumeclaims', namespace, 'claim-carol'), undefined);
  } finally {
    await kube.close();
  }
});

test('a profile_list function (JS/TS config module) fills the spawn form, as KubeSpawner renders it; one that throws, answers garbage or hangs is a message on the page, never a crash', async () => {
  const asked: KubeSpawnerView[] = [];
  const kube = await startKubeHub({
    'JupyterHub.slow_spawn_timeout': 0,
    'Authenticator.allow_all': true,
    'PasswordAuthenticator.password': 'pw',
    'KubeSpawner.start_timeout': 20,
    'KubeSpawner.profile_list': async (spawner: KubeSpawnerView) => {
      asked.push(structuredClone(spawner));
      if (spawner.user.name === 'broken') throw new Error('the profile service is down');
      if (spawner.user.name === 'garbage') return 'not a list';
      if (spawner.user.name === 'hangs') return new Promise(() => undefined);
      return [
        { display_name: 'Small', default: true },
        {
          display_name: `Large <for> ${spawner.user.name}`,
          slug: 'large',
          kubespawner_override: { cpu_limit: 4 },
        },
      ];
    },
  });
  const { hub, fake } = kube;
  const page = async (cookie: string, path: string, form?: Record<string, string>) => {
    const response = await fetch(`${hub.url}${path}`, {
      redirect: 'manual',
      headers: {
        cookie,
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { method: 'POST', body: new URLSearchParams(form) } : {}),
    });
    return {
      status: response.status,
      location: response.headers.get('location'),
      text: await response.text(),
    };
  };
  const xsrfOf = (text: string) => /name="_xsrf" value="([^"]+)"/.exec(text)?.[1] ?? '';
  try {
    const alice = await signIn(hub.url, 'alice', 'pw');
    const home = await page(alice, '/hub/home');
    assert.match(home.text, /<a class="button" href="\/hub\/spawn\/alice">Start my server<\/a>/);
    const form = await page(alice, '/hub/spawn/alice');
    assert.equal(form.status, 200, form.text);
    assert.match(form.text, /<legend>Server options<\/legend>/);
    assert.match(form.text, /id="profile-small" value="small" checked/);
    assert.match(form.text, /id="profile-large" value="large"/);
    assert.match(form.text, /<strong>Large &lt;for&gt; alice<\/strong>/);
    assert.deepEqual(asked.at(-1), {
      user: { name: 'alice', admin: false, groups: [] },
      name: '',
      user_options: {},
      namespace,
      pod_name: 'jupyter-alice',
      pvc_name: 'claim-alice',
    });
    const unknown = await page(alice, '/hub/spawn/alice', { _xsrf: xsrfOf(form.text), profile: 'huge' });
    assert.equal(unknown.status, 400);
    assert.match(unknown.text, /Unknown profile: huge/);
    const started = await page(alice, '/hub/spawn/alice', { _xsrf: xsrfOf(form.text), profile: 'large' });
    assert.equal(started.status, 302, started.text);
    assert.equal(started.location, '/hub/spawn-pending/alice');
    await waitFor('the pod', () => fake.get('pods', namespace, 'jupyter-alice'));
    assert.equal(fake.get('pods', namespace, 'jupyter-alice')!.spec.containers[0].resources.limits.cpu, '4');
    fake.setRunning(namespace, 'jupyter-alice');
    await waitFor(
      'the server ready',
      async () => ((await (await hub.api('/users/alice')).json()) as Json).servers['']?.ready === true,
    );
    assert.deepEqual(((await (await hub.api('/users/alice')).json()) as Json).servers[''].user_options, {
      profile: 'large',
    });

    for (const [name, message] of [
      [
        'broken',
        /The server options could not be loaded: KubeSpawner.profile_list\(spawner\): the profile service is down/,
      ],
      [
        'garbage',
        /The server options could not be loaded: KubeSpawner.profile_list\(spawner\): expected a list of profiles/,
      ],
      [
        'hangs',
        /The server options could not be loaded: KubeSpawner.profile_list\(spawner\): no answer within 10 s/,
      ],
    ] as const) {
      const cookie = await signIn(hub.url, name, 'pw');
      const began = Date.now();
      const failed = await page(cookie, `/hub/spawn/${name}`);
      assert.equal(failed.status, 500, failed.text);
      assert.match(failed.text, /<p class="alert" role="alert">/);
      assert.match(failed.text, message);
      if (name === 'hangs') assert.ok(Date.now() - began >= 9_000, 'the timeout is 10 s');
      // Another user's form: refused before the function is asked about alice.
      const count = asked.length;
      assert.equal((await page(cookie, '/hub/spawn/alice')).status, 403);
      assert.equal(asked.length, count);
    }
    assert.equal((await fetch(`${hub.url}/hub/health`)).status, 200);
  } finally {
    await kube.close();
  }
});

test('a server whose stored state was rewritten to name another user’s pod, or a pod in another namespace, stops its own pod and leaves those alone', async () => {
  const kube = await startKubeHub({}, 'info');
  const { hub, fake, client, dir, logs } = kube;
  const sqlite = new DatabaseSync(join(dir, 'hub.sqlite'));
  sqlite.exec('PRAGMA busy_timeout = 5000');
  const forge = (user: string, state: Json) =>
    sqlite
      .prepare(
        "UPDATE spawners SET state = ? WHERE name = '' AND user_id = (SELECT id FROM users WHERE name = ?)",
      )
      .run(JSON.stringify(state), user);
  const spawn = async (user: string) => {
    await hub.api(`/users/${user}`, { method: 'POST' });
    const started = hub.api(`/users/${user}/server`, { method: 'POST' });
    await waitFor(`pod of ${user}`, () => fake.get('pods', namespace, `jupyter-${user}`));
    fake.setRunning(namespace, `jupyter-${user}`);
    assert.equal((await started).status, 201);
  };
  const stop = async (user: string) => {
    assert.ok([202, 204].includes((await hub.api(`/users/${user}/server`, { method: 'DELETE' })).status));
    await waitFor(
      `${user} stopped`,
      async () => ((await (await hub.api(`/users/${user}`)).json()) as Json).server === null,
    );
  };
  try {
    await spawn('victor');
    const victor = fake.get('pods', namespace, 'jupyter-victor')!.metadata.uid;
    // Another hub's pod for a user of the same name, in another namespace.
    await client.create('/api/v1/namespaces/elsewhere/pods', {
      ...structuredClone(fake.received.find((pod) => pod.metadata.name === 'jupyter-victor')!),
      metadata: {
        name: 'jupyter-mallory',
        labels: {
          component: 'singleuser-server',
          'hub.jupyter.org/username': 'mallory',
          'hub.jupyter.org/servername': '',
        },
      },
    });
    const elsewhere = fake.get('pods', 'elsewhere', 'jupyter-mallory')!.metadata.uid;

    for (const state of [
      { pod_name: 'jupyter-victor', namespace, dns_name: '' },
      { pod_name: 'jupyter-mallory', namespace: 'elsewhere', dns_name: '' },
    ]) {
      await spawn('mallory');
      forge('mallory', state);
      await stop('mallory');
      assert.equal(fake.get('pods', namespace, 'jupyter-mallory'), undefined, 'her own pod is stopped');
      assert.equal(fake.get('pods', namespace, 'jupyter-victor')?.metadata.uid, victor, 'victor’s pod stays');
      assert.equal(
        fake.get('pods', 'elsewhere', 'jupyter-mallory')?.metadata.uid,
        elsewhere,
        'the other namespace’s pod stays',
      );
    }
    assert.ok(
      logs.has(
        "refusing the pod the saved state names: its labels are not this server's; it is neither polled, adopted nor deleted",
      ),
    );
    assert.ok(
      logs.has(
        "refusing the pod the saved state names: it is in another namespace than this hub's; it is neither polled, adopted nor deleted",
      ),
    );
    assert.equal(
      fake.requests.filter(
        (r) =>
          r.method === 'DELETE' &&
          (r.path.endsWith('/jupyter-victor') || r.path.startsWith('/api/v1/namespaces/elsewhere/')),
      ).length,
      0,
    );
    assert.equal(((await (await hub.api('/users/victor')).json()) as Json).servers[''].ready, true);
  } finally {
    sqlite.close();
    await kube.close();
  }
});
