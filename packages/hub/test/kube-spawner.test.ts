// The Kubernetes spawner against the fake apiserver over HTTPS, authenticated as a pod's service
// account: spawn, progress from pod events, stop, re-attach from saved state, the shared watch
// surviving drops and 410 Gone, and the apiserver's refusals (403, 409, 422) as typed errors.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '@seahorse/runtime';
import { issueCertificate, LogCapture, makeCertificateAuthority, waitFor } from '@seahorse/runtime/testing';
import { loadConfigFile } from '../src/config.ts';
import {
  corePath,
  inClusterConnection,
  KubeClient,
  kubeconfigConnection,
} from '../src/spawners/kube-client.ts';
import { KubeForbiddenError, KubeInvalidError, KubeUnauthorizedError } from '../src/spawners/kube-errors.ts';
import { defaultKubeTraits, type KubeTraits } from '../src/spawners/kube-objects.ts';
import { createKubeSpawner, type KubeShared } from '../src/spawners/kubernetes.ts';
import { PodReflector, type ReflectorOptions } from '../src/spawners/pod-reflector.ts';
import type { JsonObject, ProgressEvent, ServerSpec, Spawner } from '../src/spawners/spawner.ts';
import { FakeApiServer } from './fake-apiserver.ts';
import { serverSpec } from './kube-helpers.ts';

const namespace = 'jupyterhub';
const token = 'service-account-token-0123456789';

let dir: string;
let fake: FakeApiServer;
let client: KubeClient;
let notebook: http.Server;
let notebookPort: number;
const logs = new LogCapture();
const log = createLogger({ name: 'test', level: 'debug', destination: logs });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'seahorse-kube-'));
  makeCertificateAuthority(dir);
  const tls = issueCertificate(dir, 'apiserver');
  fake = new FakeApiServer({ tls, token });
  const url = new URL(await fake.listen());
  // The service account as the kubelet mounts it.
  const sa = join(dir, 'serviceaccount');
  mkdirSync(sa);
  copyFileSync(join(dir, 'ca.crt'), join(sa, 'ca.crt'));
  writeFileSync(join(sa, 'token'), token);
  writeFileSync(join(sa, 'namespace'), namespace);
  client = new KubeClient(
    inClusterConnection({ KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port }, sa),
    { requestTimeoutMs: 5000 },
  );
  // What the pod's server answers once "running" (the fake gives pods the IP 127.0.0.1).
  notebook = http.createServer((req, res) => res.end(`notebook at ${req.url}`));
  await new Promise<void>((resolve) => notebook.listen(0, '127.0.0.1', resolve));
  notebookPort = (notebook.address() as AddressInfo).port;
});

after(async () => {
  client.close();
  await fake.close();
  notebook.close();
  rmSync(dir, { recursive: true, force: true });
});

function traits(changes: Partial<KubeTraits> = {}): KubeTraits {
  return {
    ...defaultKubeTraits,
    namespace,
    port: notebookPort,
    start_timeout: 10,
    http_timeout: 5,
    volumes: [{ name: 'home', hostPath: { path: '/data/{user}' } }],
    volume_mounts: [{ name: 'home', mountPath: '/home/jovyan', readOnly: '{is_not_admin}' }],
    ...changes,
  };
}

function shared(): KubeShared {
  return { client, reflector: new PodReflector(client, namespace, 'singleuser-server', log) };
}

/**
 * Runs `body` with the client and a pod watch of its own, as a hub has them: the watch started
 * first unless `watching` is false (another replica leads), and stopped after.
 */
async function withKube<T>(body: (kube: KubeShared) => Promise<T>, watching = true): Promise<T> {
  const kube = shared();
  if (watching) kube.reflector.start();
  try {
    return await body(kube);
  } finally {
    await kube.reflector.stop();
  }
}

/** Runs `body` with a pod watch of these options, started and synced first, and stopped after. */
async function withSyncedReflector<T>(
  options: Partial<ReflectorOptions>,
  body: (reflector: PodReflector) => Promise<T>,
): Promise<T> {
  const reflector = new PodReflector(client, namespace, 'singleuser-server', log, options);
  reflector.start();
  try {
    await reflector.waitSynced(5000);
    return await body(reflector);
  } finally {
    await reflector.stop();
  }
}

function spawnerFor(
  kube: KubeShared,
  spec: ServerSpec,
  t: KubeTraits,
  state: JsonObject | null = null,
): { spawner: Spawner; events: ProgressEvent[] } {
  const events: ProgressEvent[] = [];
  const spawner = createKubeSpawner({ spec, state, log, progress: (event) => events.push(event) }, kube, t);
  return { spawner, events };
}

/** The kubelet's part, after the pod appears: events, then Running. */
async function runWhenCreated(podName: string): Promise<void> {
  await waitFor(`pod ${podName}`, () => fake.get('pods', namespace, podName));
  fake.event(namespace, podName, 'Normal', 'Pulling', 'Pulling image "quay.io/jupyterhub/singleuser:latest"');
  fake.event(namespace, podName, 'Normal', 'Pulled', 'Successfully pulled image');
  fake.setRunning(namespace, podName);
}

describe('the Kubernetes spawner', () => {
  test('spawn creates a valid pod, reports its events as progress, answers with the pod URL; stop deletes it', async () => {
    await withKube(async (kube) => {
      const { spawner, events } = spawnerFor(kube, serverSpec('alice', false, '', ''), traits());
      const [url] = await Promise.all([spawner.start(), runWhenCreated('jupyter-alice')]);
      assert.equal(url, `http://127.0.0.1:${notebookPort}`);
      const pod = fake.received.find((object) => object.metadata.name === 'jupyter-alice')!;
      assert.equal(pod.spec.volumes[0].hostPath.path, '/data/alice');
      assert.equal(pod.spec.containers[0].volumeMounts[0].readOnly, true);
      const messages = events.map((event) => event.message);
      assert.ok(
        messages.some((m) => m.includes('[Normal] Successfully assigned jupyterhub/jupyter-alice')),
        messages.join('\n'),
      );
      assert.ok(
        messages.some((m) => m.includes('[Normal] Pulling image')),
        messages.join('\n'),
      );
      assert.ok(
        events.every((event, i) => i === 0 || event.progress >= events[i - 1]!.progress),
        'progress never goes back',
      );
      assert.deepEqual(spawner.state(), {
        pod_name: 'jupyter-alice',
        namespace,
        dns_name: 'jupyter-alice.jupyterhub.svc.cluster.local',
      });
      assert.equal(await spawner.poll(), null);
      await spawner.stop();
      assert.equal(fake.get('pods', namespace, 'jupyter-alice'), undefined);
      assert.equal(await spawner.poll(), 1);
    });
  });

  test('one watch serves every server: two spawns and their polls make a single pod watch', async () => {
    const watchesBefore = fake.watchRequests('pods').length;
    await withKube(async (kube) => {
      const a = spawnerFor(kube, serverSpec('bob', false, '', ''), traits());
      const b = spawnerFor(kube, serverSpec('bob', false, 'gpu', ''), traits());
      await Promise.all([
        a.spawner.start(),
        b.spawner.start(),
        runWhenCreated('jupyter-bob'),
        runWhenCreated('jupyter-bob--gpu'),
      ]);
      const gets = fake.requests.length;
      for (let i = 0; i < 5; i++) {
        assert.equal(await a.spawner.poll(), null);
        assert.equal(await b.spawner.poll(), null);
      }
      assert.equal(fake.requests.length, gets, 'polls read the shared copy, not the API');
      await waitFor('the shared watch', () => fake.watchRequests('pods').length > watchesBefore);
      assert.equal(fake.watchRequests('pods').length - watchesBefore, 1);
      await Promise.all([a.spawner.stop(true), b.spawner.stop(true)]);
    });
  });

  test('services_enabled creates a service owned by the pod, and the URL is its DNS name; it goes with the pod', async () => {
    await withKube(async (kube) => {
      const t = traits({ services_enabled: true, dns_name_template: '127.0.0.1' });
      const { spawner } = spawnerFor(kube, serverSpec('carol', true, '', ''), t);
      const [url] = await Promise.all([spawner.start(), runWhenCreated('jupyter-carol')]);
      assert.equal(url, `http://127.0.0.1:${notebookPort}`);
      const service = fake.get('services', namespace, 'jupyter-carol')!;
      const pod = fake.get('pods', namespace, 'jupyter-carol')!;
      assert.equal(service.metadata.ownerReferences[0].uid, pod.metadata.uid);
      assert.equal(service.spec.selector.component, 'singleuser-server');
      await spawner.stop();
      assert.equal(fake.get('services', namespace, 'jupyter-carol'), undefined);
    });
  });

  test('storage_pvc_ensure creates the PVC once and remembers it in the state', async () => {
    await withKube(async (kube) => {
      const t = traits({ storage_pvc_ensure: true, storage_capacity: '10Gi', storage_class: 'standard' });
      const first = spawnerFor(kube, serverSpec('dave', false, '', ''), t);
      await Promise.all([first.spawner.start(), runWhenCreated('jupyter-dave')]);
      const pvc = fake.get('persistentvolumeclaims', namespace, 'claim-dave')!;
      assert.equal(pvc.spec.resources.requests.storage, '10Gi');
      assert.equal(pvc.metadata.labels.component, 'singleuser-storage');
      assert.equal(first.spawner.state().pvc_name, 'claim-dave');
      await first.spawner.stop(true);
      // A later start (from the saved state, so KubeSpawner's remember_pvc_name) does not create it again.
      const creates = fake.requests.filter(
        (r) => r.method === 'POST' && r.path.endsWith('/persistentvolumeclaims'),
      ).length;
      const second = spawnerFor(kube, serverSpec('dave', false, '', ''), t, first.spawner.state());
      await Promise.all([second.spawner.start(), runWhenCreated('jupyter-dave')]);
      assert.equal(
        fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/persistentvolumeclaims')).length,
        creates,
      );
      await second.spawner.stop(true);
    });
  });

  test('delete_pvc: deleteForever deletes the remembered PVC; delete_pvc false, or a named server sharing the PVC, keeps it', async () => {
    await withKube(async (kube) => {
      const t = traits({
        storage_pvc_ensure: true,
        storage_capacity: '1Gi',
        pvc_name_template: 'home-{username}',
      });
      const first = spawnerFor(kube, serverSpec('erin', false, '', ''), t);
      await Promise.all([first.spawner.start(), runWhenCreated('jupyter-erin')]);
      await first.spawner.stop(true);
      // What the database keeps after the stop: the PVC's name, so the next start uses it.
      const kept = first.spawner.stoppedState!();
      assert.deepEqual(kept, { pvc_name: 'home-erin' });
      // A named server whose PVC template has no server field shares the default's: kept.
      await spawnerFor(kube, serverSpec('erin', false, 'side', ''), t).spawner.deleteForever!();
      assert.ok(fake.get('persistentvolumeclaims', namespace, 'home-erin'));
      await spawnerFor(kube, serverSpec('erin', false, '', ''), { ...t, delete_pvc: false }, kept).spawner
        .deleteForever!();
      assert.ok(fake.get('persistentvolumeclaims', namespace, 'home-erin'));
      await spawnerFor(kube, serverSpec('erin', false, '', ''), t, kept).spawner.deleteForever!();
      assert.equal(fake.get('persistentvolumeclaims', namespace, 'home-erin'), undefined);
      // Already gone (404) is not an error; RBAC refusing the delete is.
      await spawnerFor(kube, serverSpec('erin', false, '', ''), t, kept).spawner.deleteForever!();
      fake.forbidden.add('delete persistentvolumeclaims');
      try {
        await assert.rejects(
          spawnerFor(kube, serverSpec('erin', false, '', ''), t, kept).spawner.deleteForever!(),
          KubeForbiddenError,
        );
      } finally {
        fake.forbidden.delete('delete persistentvolumeclaims');
      }
    });
  });

  test('callables from a JS/TS config module (profile_list, uid, fs_gid, modify_pod_hook) and the affinity traits give the golden pods', async () => {
    const config = await loadConfigFile(
      join(import.meta.dirname, 'fixtures', 'kube', 'callables.config.ts'),
      {
        CONFIGPROXY_AUTH_TOKEN: 'proxy-token',
      },
    );
    const callables = config.hooks.kube!;
    assert.equal(typeof callables.modify_pod_hook, 'function');
    await withKube(async (kube) => {
      for (const item of [
        { file: 'pod-callables-admin.json', user: 'root', admin: true, server: 'big', profile: 'large' },
        { file: 'pod-callables-user.json', user: 'alice', admin: false, server: '', profile: '' },
      ]) {
        const spec = serverSpec(item.user, item.admin, item.server, item.profile);
        const t = { ...config.kube!, port: notebookPort };
        const spawner = createKubeSpawner(
          { spec, state: null, log, progress: () => undefined },
          kube,
          t,
          callables,
        );
        const podName = item.server ? `jupyter-${item.user}--${item.server}` : `jupyter-${item.user}`;
        await Promise.all([spawner.start(), runWhenCreated(podName)]);
        // The port is the test's notebook server's, not part of the fixture.
        const pod = JSON.parse(
          JSON.stringify(fake.received.findLast((object) => object.metadata.name === podName)!)
            .replaceAll(`:${notebookPort}/`, ':8888/')
            .replaceAll(`"containerPort":${notebookPort}`, '"containerPort":8888'),
        );
        const file = join(import.meta.dirname, 'fixtures', 'kube', item.file);
        if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, `${JSON.stringify(pod, null, 2)}\n`);
        assert.deepEqual(pod, JSON.parse(readFileSync(file, 'utf8')), item.file);
        await spawner.stop(true);
      }
      // A user asking for the profile only admins get is refused, naming the ones there are.
      const refused = createKubeSpawner(
        { spec: serverSpec('bob', false, '', 'large'), state: null, log, progress: () => undefined },
        kube,
        config.kube!,
        callables,
      );
      await assert.rejects(refused.start(), /unknown profile "large"; choose one of small/);
      // A hook that returns something other than the pod fails the spawn before any create.
      const creates = fake.requests.filter((r) => r.method === 'POST').length;
      const broken = createKubeSpawner(
        { spec: serverSpec('bob', false, '', ''), state: null, log, progress: () => undefined },
        kube,
        config.kube!,
        { ...callables, modify_pod_hook: () => undefined as never, uid: () => 'x' as never },
      );
      await assert.rejects(broken.start(), /KubeSpawner\.uid\(spawner\): expected/);
      const renamed = createKubeSpawner(
        { spec: serverSpec('bob', false, '', ''), state: null, log, progress: () => undefined },
        kube,
        config.kube!,
        { modify_pod_hook: (_spawner, pod) => ({ ...pod, kind: 'Service' }) },
      );
      await assert.rejects(renamed.start(), /must return the pod/);
      assert.equal(fake.requests.filter((r) => r.method === 'POST').length, creates);
    });
  });

  test('a stop while a callable still runs (a hanging profile_list or hook) ends the start: no pod is created after it', async () => {
    await withKube(async (kube) => {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let hooked = false;
      const spawner = createKubeSpawner(
        { spec: serverSpec('carol', false, '', ''), state: null, log, progress: () => undefined },
        kube,
        traits(),
        {
          modify_pod_hook: async (_spawner, pod) => {
            hooked = true;
            await gate;
            return pod;
          },
        },
      );
      const creates = fake.requests.filter((r) => r.method === 'POST').length;
      const starting = spawner.start();
      starting.catch(() => undefined);
      await waitFor('the hook runs', () => hooked);
      // What the hub does when its spawn timeout fires, or the user stops the pending server.
      await spawner.stop(true);
      release();
      await assert.rejects(starting, { code: 'HUB_SPAWN_STATE' });
      assert.equal(fake.requests.filter((r) => r.method === 'POST').length, creates, 'nothing created');
      assert.equal(fake.get('pods', namespace, 'jupyter-carol'), undefined);
      // The next start is not refused for that stop.
      const [url] = await Promise.all([spawner.start(), runWhenCreated('jupyter-carol')]);
      assert.equal(url, `http://127.0.0.1:${notebookPort}`);
      await spawner.stop(true);
    });
  });

  test('a hostile watch (garbage lines, objects without metadata, wrong shapes, a stall) never crashes or hangs a spawn', async () => {
    await withSyncedReflector({ idleTimeoutMs: 400, backoffMs: 20 }, async (reflector) => {
      const { spawner } = spawnerFor({ client, reflector }, serverSpec('mallory', false, '', ''), traits());
      const started = spawner.start();
      await waitFor('pod jupyter-mallory', () => fake.get('pods', namespace, 'jupyter-mallory'));
      const watchesBefore = reflector.watches;
      fake.writeToWatches(
        'pods',
        '{"type":"ADDED","object":{}}\n{"type":"MODIFIED","object":{"metadata":{"name":5}}}\n',
      );
      // Running by its phase, but with statuses that are not a list and a podIP that is no IP.
      fake.writeToWatches(
        'pods',
        `${JSON.stringify({ type: 'MODIFIED', object: { kind: 'Pod', metadata: { name: 'jupyter-mallory', labels: { component: 'singleuser-server' } }, status: { phase: 'Running', podIP: 'evil.example/x', containerStatuses: { ready: true } } } })}\n`,
      );
      fake.writeToWatches('pods', 'this is not json\n');
      await waitFor('the watch made again after the garbage line', () => reflector.watches > watchesBefore);
      // A stream that stalls without closing is found out and made again.
      const beforeStall = reflector.watches;
      fake.stallWatches();
      await waitFor('the stalled watch made again', () => reflector.watches > beforeStall, {
        timeoutMs: 5000,
      });
      fake.setRunning(namespace, 'jupyter-mallory');
      assert.equal(await started, `http://127.0.0.1:${notebookPort}`);
      await spawner.stop(true);
    });
  });

  test('re-attach: a new spawner from the saved state polls the running pod; an exited pod is reported and deleted', async () => {
    const state = await withKube(async (kube) => {
      const { spawner } = spawnerFor(kube, serverSpec('erin', false, '', ''), traits());
      await Promise.all([spawner.start(), runWhenCreated('jupyter-erin')]);
      return spawner.state();
    });
    // The "restarted hub": new client objects, the state from the database.
    await withKube(async (restarted) => {
      const again = spawnerFor(
        restarted,
        serverSpec('erin', false, '', ''),
        traits(),
        structuredClone(state),
      ).spawner;
      await restarted.reflector.waitSynced(5000);
      assert.equal(await again.poll(), null);
      fake.terminate(namespace, 'jupyter-erin', 3);
      await waitFor('the exit seen', async () => (await again.poll()) === 3);
      await waitFor(
        'the exited pod deleted',
        () => fake.get('pods', namespace, 'jupyter-erin') === undefined,
      );
    });
  });

  test('a forged state naming another user’s pod and PVC is refused: the pod is not polled, adopted or deleted, the PVC neither mounted nor deleted', async () => {
    await withKube(async (kube) => {
      const t = traits({
        storage_pvc_ensure: true,
        storage_capacity: '1Gi',
        volumes: [{ name: 'home', persistentVolumeClaim: { claimName: '{pvc_name}' } }],
        volume_mounts: [{ name: 'home', mountPath: '/home/jovyan' }],
      });
      const victim = spawnerFor(kube, serverSpec('victor', false, '', ''), t);
      await Promise.all([victim.spawner.start(), runWhenCreated('jupyter-victor')]);
      const victimUid = fake.get('pods', namespace, 'jupyter-victor')!.metadata.uid;
      assert.ok(fake.get('persistentvolumeclaims', namespace, 'claim-victor'));
      await kube.reflector.waitSynced(5000);
      // Mallory's server row, its state rewritten to name Victor's pod and claim.
      const forged = { pod_name: 'jupyter-victor', namespace, dns_name: '', pvc_name: 'claim-victor' };
      const mallory = () =>
        spawnerFor(kube, serverSpec('mallory', false, '', ''), t, structuredClone(forged));
      const polled = mallory().spawner;
      assert.equal(await polled.poll(), 1, 'Victor’s running pod is not taken for Mallory’s server');
      assert.ok(
        logs.has(
          "refusing the pod the saved state names: its labels are not this server's; it is neither polled, adopted nor deleted",
        ),
      );
      await mallory().spawner.stop(true);
      assert.equal(fake.get('pods', namespace, 'jupyter-victor')?.metadata.uid, victimUid, 'not deleted');
      await mallory().spawner.deleteForever!();
      assert.ok(fake.get('persistentvolumeclaims', namespace, 'claim-victor'), 'Victor’s PVC is not deleted');
      assert.ok(
        logs.has(
          "refusing the PVC the saved state names: its labels are not this user's; using the templates’ name",
        ),
      );
      // A start from the forged state mounts Mallory's own claim, and her state names it.
      const started = mallory().spawner;
      await Promise.all([started.start(), runWhenCreated('jupyter-mallory')]);
      const pod = fake.get('pods', namespace, 'jupyter-mallory')!;
      const claims = (pod.spec.volumes as Array<{ persistentVolumeClaim?: { claimName: string } }>)
        .map((volume) => volume.persistentVolumeClaim?.claimName)
        .filter(Boolean);
      assert.deepEqual(claims, ['claim-mallory']);
      assert.equal(started.state().pvc_name, 'claim-mallory');
      assert.equal(started.state().pod_name, 'jupyter-mallory');
      await started.stop(true);
      // Victor's server runs on.
      assert.equal(await victim.spawner.poll(), null);
      await victim.spawner.stop(true);
    });
  });

  test('a state naming a pod under an older pod_name_template is adopted when the pod carries this server’s labels', async () => {
    await withKube(async (kube) => {
      const old = spawnerFor(
        kube,
        serverSpec('olga', false, 'lab', ''),
        traits({ pod_name_template: 'old-{user_server}' }),
      );
      await Promise.all([old.spawner.start(), runWhenCreated('old-olga--lab')]);
      await kube.reflector.waitSynced(5000);
      const adopted = spawnerFor(
        kube,
        serverSpec('olga', false, 'lab', ''),
        traits(),
        old.spawner.state(),
      ).spawner;
      assert.equal(await adopted.poll(), null);
      // Olga's default server's state naming the named server's pod is refused (another server).
      const other = spawnerFor(
        kube,
        serverSpec('olga', false, '', ''),
        traits(),
        old.spawner.state(),
      ).spawner;
      assert.equal(await other.poll(), 1);
      await other.stop(true);
      assert.ok(fake.get('pods', namespace, 'old-olga--lab'));
      await adopted.stop(true);
      assert.equal(fake.get('pods', namespace, 'old-olga--lab'), undefined);
      const deletes = fake.requests.filter(
        (r) => r.method === 'DELETE' && r.path.endsWith('/pods/old-olga--lab'),
      );
      assert.equal(
        deletes.at(-1)!.body?.preconditions?.uid !== undefined,
        true,
        'the delete is conditional on the checked pod',
      );
    });
  });

  test('a checked pod replaced before the stop (another uid): the poll and the stop check the new pod’s labels again, adopt and delete it when it is this server’s, and leaves another’s', async () => {
    await withKube(async (kube) => {
      /** Replaces the pod by one of the same name, with the labels `relabel` gives (a new uid). */
      const replace = async (name: string, relabel: (labels: Record<string, string>) => void) => {
        const old = structuredClone(fake.get('pods', namespace, name)!);
        await client.delete(corePath(namespace, 'pods', name), { gracePeriodSeconds: 0 });
        const labels = { ...old.metadata.labels };
        relabel(labels);
        await client.create(corePath(namespace, 'pods'), {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, labels },
          spec: old.spec,
        });
        await waitFor('the replacement in the watch', () => {
          const seen = kube.reflector.items.get(name) as { metadata?: { uid?: string } } | undefined;
          return seen?.metadata?.uid === fake.get('pods', namespace, name)?.metadata.uid;
        });
        assert.notEqual(fake.get('pods', namespace, name)!.metadata.uid, old.metadata.uid);
      };
      const t = traits({ pod_name_template: 'old-{user_server}' });
      for (const [user, ours] of [
        ['rita', true],
        ['ruth', false],
      ] as const) {
        const old = spawnerFor(kube, serverSpec(user, false, 'lab', ''), t);
        const name = `old-${user}--lab`;
        await Promise.all([old.spawner.start(), runWhenCreated(name)]);
        await kube.reflector.waitSynced(5000);
        const adopted = spawnerFor(
          kube,
          serverSpec(user, false, 'lab', ''),
          traits(),
          old.spawner.state(),
        ).spawner;
        assert.equal(await adopted.poll(), null);
        await replace(name, (labels) => {
          if (!ours) labels['hub.jupyter.org/username'] = 'someone-else';
        });
        // A poll reads the new pod as this server's only when its labels are.
        assert.equal(await adopted.poll(), ours ? null : 1);
        await adopted.stop(true);
        if (ours)
          assert.equal(fake.get('pods', namespace, name), undefined, 'this server’s new pod is deleted');
        else assert.ok(fake.get('pods', namespace, name), 'another’s pod is left alone');
        await client
          .delete(corePath(namespace, 'pods', name), { gracePeriodSeconds: 0 })
          .catch(() => undefined);
      }
    });
  });

  test('hostile names in a saved state (/, .., %2F, upper case, 300 characters, selector characters) are refused: no other pod is polled or deleted, nothing crashes', async () => {
    const kube = shared();
    const t = traits();
    const victim = spawnerFor(kube, serverSpec('vera', false, '', ''), t);
    await Promise.all([victim.spawner.start(), runWhenCreated('jupyter-vera')]);
    const uid = fake.get('pods', namespace, 'jupyter-vera')!.metadata.uid;
    const hostile = [
      '..',
      '.',
      '../pods/jupyter-vera',
      '..%2Fjupyter-vera',
      'jupyter-vera/status',
      'Jupyter-Vera',
      'x'.repeat(300),
      'jupyter-vera,metadata.name!=x',
      'jupyter-vera?dryRun=All',
      '',
    ];
    for (const podName of hostile) {
      for (const reflector of [false, true]) {
        if (reflector) {
          kube.reflector.start();
          await kube.reflector.waitSynced(5000);
        }
        const state = { pod_name: podName, namespace, dns_name: '', pvc_name: podName };
        const spawner = spawnerFor(kube, serverSpec('mona', false, '', ''), t, state).spawner;
        assert.equal(await spawner.poll(), 1, JSON.stringify(podName));
        await spawner.stop(true);
        await spawner.deleteForever!();
        assert.equal(fake.get('pods', namespace, 'jupyter-vera')?.metadata.uid, uid, JSON.stringify(podName));
        if (reflector) await kube.reflector.stop();
      }
    }
    await victim.spawner.stop(true);
  });

  test('a pod of the same name but another uid in the watch while the start waits (its pod deleted, another made in its place) fails the start; it is not taken for this server’s', async () => {
    for (const withReflector of [false, true]) {
      await withKube(async (kube) => {
        const { spawner } = spawnerFor(kube, serverSpec('hugo', false, '', ''), traits({ start_timeout: 5 }));
        const swap = (async () => {
          await waitFor('pod jupyter-hugo', () => fake.get('pods', namespace, 'jupyter-hugo'));
          const old = structuredClone(fake.get('pods', namespace, 'jupyter-hugo')!);
          await client.delete(corePath(namespace, 'pods', 'jupyter-hugo'), { gracePeriodSeconds: 0 });
          await client.create(corePath(namespace, 'pods'), {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: {
              name: 'jupyter-hugo',
              labels: { ...old.metadata.labels, 'hub.jupyter.org/username': 'someone-else' },
            },
            spec: old.spec,
          });
          fake.setRunning(namespace, 'jupyter-hugo');
        })();
        await assert.rejects(spawner.start(), /deleted while it was starting|replaced/);
        await swap;
        // The other pod is not this server's to delete.
        assert.equal(
          fake.get('pods', namespace, 'jupyter-hugo')?.metadata.labels['hub.jupyter.org/username'],
          'someone-else',
        );
        await client.delete(corePath(namespace, 'pods', 'jupyter-hugo'), { gracePeriodSeconds: 0 });
      }, withReflector);
    }
  });

  test('without the shared watch (another replica leads), start watches its own pod and poll reads the API', async () => {
    const kube = shared();
    const { spawner } = spawnerFor(kube, serverSpec('fay', false, '', ''), traits());
    await Promise.all([spawner.start(), runWhenCreated('jupyter-fay')]);
    const watch = fake.watchRequests('pods').at(-1)!;
    assert.equal(watch.query.fieldSelector, 'metadata.name=jupyter-fay');
    await waitFor('the start’s own watch closed', () => fake.openWatches === 0);
    assert.equal(await spawner.poll(), null);
    assert.ok(fake.requests.at(-1)!.path.endsWith('/pods/jupyter-fay'));
    await spawner.stop(true);
    assert.equal(await spawner.poll(), 1);
  });

  test('a pod that never runs fails the spawn after start_timeout, and is deleted', async () => {
    await withKube(async (kube) => {
      const { spawner } = spawnerFor(kube, serverSpec('gus', false, '', ''), traits({ start_timeout: 0.5 }));
      await assert.rejects(spawner.start(), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'HUB_SPAWN_TIMEOUT');
        return true;
      });
      assert.equal(fake.get('pods', namespace, 'jupyter-gus'), undefined);
    });
  });

  test('a pod whose notebook exits while starting fails the spawn with its exit code', async () => {
    await withKube(async (kube) => {
      const { spawner } = spawnerFor(kube, serverSpec('hal', false, '', ''), traits());
      const crash = (async () => {
        await waitFor('pod', () => fake.get('pods', namespace, 'jupyter-hal'));
        fake.terminate(namespace, 'jupyter-hal', 2, 'Error');
      })();
      await assert.rejects(spawner.start(), (error: Error & { code?: string; exitCode?: number }) => {
        assert.equal(error.code, 'HUB_SPAWN_EXITED');
        assert.equal(error.exitCode, 2);
        return true;
      });
      await crash;
    });
  });

  test('409: a leftover pod of the same name is deleted and the pod created again', async () => {
    await withKube(async (kube) => {
      const leftover = spawnerFor(kube, serverSpec('ivy', false, '', ''), traits());
      await Promise.all([leftover.spawner.start(), runWhenCreated('jupyter-ivy')]);
      const oldUid = fake.get('pods', namespace, 'jupyter-ivy')!.metadata.uid;
      const fresh = spawnerFor(kube, serverSpec('ivy', false, '', ''), traits());
      const created = (async () => {
        await waitFor(
          'a new pod',
          () =>
            fake.get('pods', namespace, 'jupyter-ivy')?.metadata.uid !== oldUid &&
            fake.get('pods', namespace, 'jupyter-ivy'),
        );
        fake.setRunning(namespace, 'jupyter-ivy');
      })();
      await Promise.all([fresh.spawner.start(), created]);
      assert.ok(fresh.events.some((event) => event.message.includes('Deleting the old pod')));
      await fresh.spawner.stop(true);
    });
  });

  test('a create answered with something other than the pod (garbage, truncated, another kind or name) fails the start clearly and leaves no pod', async () => {
    for (const [what, mangle] of [
      ['garbage', () => 'not json at all {{{'],
      ['truncated', (pod: Record<string, unknown>) => JSON.stringify(pod).slice(0, 60)],
      ['another kind', (pod: Record<string, unknown>) => JSON.stringify({ ...pod, kind: 'Service' })],
      [
        'another name',
        (pod: Record<string, unknown>) =>
          JSON.stringify({ ...pod, metadata: { ...(pod.metadata as object), name: 'jupyter-someone-else' } }),
      ],
      ['a JSON string', () => JSON.stringify('Pod')],
    ] as const) {
      for (const shared_ of [true, false]) {
        const kube = shared();
        if (shared_) kube.reflector.start();
        fake.answerCreate = (resource, object) => (resource === 'pods' ? mangle(object) : undefined);
        try {
          const { spawner } = spawnerFor(kube, serverSpec('ivy', false, '', ''), traits());
          await assert.rejects(spawner.start(), (error: Error & { code?: string }) => {
            assert.equal(error.code, 'HUB_KUBE_CONNECTION', what);
            assert.match(
              error.message,
              /the apiserver's answer to the create of pod jupyterhub\/jupyter-ivy was not a Pod \(.+\); the pod, if it was made, has been deleted/,
              what,
            );
            return true;
          });
          assert.equal(fake.get('pods', namespace, 'jupyter-ivy'), undefined, `${what}: no pod left`);
        } finally {
          fake.answerCreate = undefined;
          await kube.reflector.stop();
        }
      }
    }
  });

  test('a create the client gave up on that the apiserver carries out after the delete by name (a slow admission webhook) leaves no pod running', async () => {
    const impatient = new KubeClient(
      inClusterConnection(
        {
          KUBERNETES_SERVICE_HOST: new URL(fake.url).hostname,
          KUBERNETES_SERVICE_PORT: new URL(fake.url).port,
        },
        join(dir, 'serviceaccount'),
      ),
      { requestTimeoutMs: 300 },
    );
    for (const withReflector of [false, true]) {
      const kube: KubeShared = {
        client: impatient,
        reflector: new PodReflector(impatient, namespace, 'singleuser-server', log),
      };
      if (withReflector) kube.reflector.start();
      fake.podCreateDelayMs = 1000;
      try {
        const { spawner } = spawnerFor(kube, serverSpec('sloane', false, '', ''), traits());
        await assert.rejects(spawner.start(), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'HUB_KUBE_CONNECTION');
          return true;
        });
        // The create lands after the start failed: the pod must not be left running.
        await new Promise((resolve) => setTimeout(resolve, 1500));
        assert.equal(fake.get('pods', namespace, 'jupyter-sloane'), undefined, 'a pod nobody knows of runs');
      } finally {
        fake.podCreateDelayMs = 0;
        await kube.reflector.stop();
        await client
          .delete(corePath(namespace, 'pods', 'jupyter-sloane'), { gracePeriodSeconds: 0 })
          .catch(() => undefined);
      }
    }
    impatient.close();
  });

  test('403 from RBAC fails the spawn with HUB_KUBE_FORBIDDEN naming what to grant', async () => {
    const kube = shared();
    fake.forbidden.add('create pods');
    try {
      const { spawner } = spawnerFor(kube, serverSpec('jan', false, '', ''), traits());
      await assert.rejects(spawner.start(), (error: Error) => {
        assert.ok(error instanceof KubeForbiddenError);
        assert.equal(error.code, 'HUB_KUBE_FORBIDDEN');
        assert.equal(error.reason, 'Forbidden');
        assert.match(error.message, /cannot create resource "pods"/);
        assert.match(error.message, /Role and RoleBinding/);
        return true;
      });
    } finally {
      fake.forbidden.delete('create pods');
    }
  });

  test('422: an invalid manifest (a mount of a volume that does not exist) fails with the field named', async () => {
    const kube = shared();
    const t = traits({ volume_mounts: [{ name: 'nowhere', mountPath: '/x' }] });
    const { spawner } = spawnerFor(kube, serverSpec('kim', false, '', ''), t);
    await assert.rejects(spawner.start(), (error: Error) => {
      assert.ok(error instanceof KubeInvalidError);
      assert.equal(error.code, 'HUB_KUBE_INVALID');
      assert.match(error.message, /spec\.containers\[0\]\.volumeMounts\[0\]\.name/);
      return true;
    });
    assert.equal(fake.get('pods', namespace, 'jupyter-kim'), undefined);
  });

  test('a watch RBAC refuses fails the spawn at once (not after start_timeout) and the pod is deleted', async () => {
    const kube = shared();
    fake.forbidden.add('list pods');
    fake.forbidden.add('watch pods');
    const began = Date.now();
    try {
      const { spawner } = spawnerFor(kube, serverSpec('olga', false, '', ''), traits({ start_timeout: 30 }));
      await assert.rejects(spawner.start(), (error: Error) => {
        assert.ok(error instanceof KubeForbiddenError, String(error));
        assert.match(error.message, /cannot list resource "pods"/);
        return true;
      });
      assert.ok(Date.now() - began < 10_000, `failed after ${Date.now() - began} ms`);
      assert.equal(fake.get('pods', namespace, 'jupyter-olga'), undefined);
    } finally {
      fake.forbidden.delete('list pods');
      fake.forbidden.delete('watch pods');
    }
  });

  test('a rotated service-account token is read again from its file', async () => {
    const sa = join(dir, 'rotating');
    mkdirSync(sa);
    copyFileSync(join(dir, 'ca.crt'), join(sa, 'ca.crt'));
    writeFileSync(join(sa, 'token'), token);
    writeFileSync(join(sa, 'namespace'), namespace);
    const url = new URL(fake.url);
    const rotating = new KubeClient(
      inClusterConnection({ KUBERNETES_SERVICE_HOST: url.hostname, KUBERNETES_SERVICE_PORT: url.port }, sa),
      { tokenRereadMs: 0 },
    );
    try {
      await rotating.get(`/api/v1/namespaces/${namespace}/pods`);
      writeFileSync(join(sa, 'token'), 'rotated-token-abcdef0123456789');
      fake.token = 'rotated-token-abcdef0123456789';
      await rotating.get(`/api/v1/namespaces/${namespace}/pods`);
      await assert.rejects(client.get(`/api/v1/namespaces/${namespace}/pods`), KubeUnauthorizedError);
    } finally {
      fake.token = token;
      rotating.close();
    }
  });

  test('a wrong token is a 401 with HUB_KUBE_UNAUTHORIZED', async () => {
    const bad = new KubeClient({ ...client.connection, tokenFile: undefined, token: 'wrong' });
    try {
      await assert.rejects(bad.get(`/api/v1/namespaces/${namespace}/pods`), KubeUnauthorizedError);
    } finally {
      bad.close();
    }
  });
});

describe('the pod reflector', () => {
  test('a dropped watch resumes from its resourceVersion without listing again, and misses nothing', async () => {
    const reflector = new PodReflector(client, namespace, 'singleuser-server', log, { backoffMs: 10 });
    const changes: string[] = [];
    reflector.on('change', (change: { type: string; object: { metadata: { name: string } } }) =>
      changes.push(`${change.type} ${change.object.metadata.name}`),
    );
    reflector.start();
    try {
      await reflector.waitSynced(5000);
      const kube: KubeShared = { client, reflector };
      const { spawner } = spawnerFor(kube, serverSpec('lee', false, '', ''), traits());
      const started = Promise.all([spawner.start(), runWhenCreated('jupyter-lee')]);
      await waitFor('the pod seen', () => reflector.items.get('jupyter-lee'));
      const watches = reflector.watches;
      fake.dropWatches();
      // Changes while no watch is open are delivered by the next one from the history.
      await started;
      await waitFor('a new watch', () => reflector.watches > watches);
      await waitFor(
        'the running pod seen',
        () =>
          (reflector.items.get('jupyter-lee') as { status?: { phase?: string } })?.status?.phase ===
          'Running',
      );
      assert.equal(reflector.lists, 1, 'no relist after a dropped watch');
      await spawner.stop(true);
      await waitFor('the deletion seen', () => changes.includes('DELETED jupyter-lee'));
    } finally {
      await reflector.stop();
    }
  });

  test('410 Gone (a compacted resourceVersion) lists again, and the copy matches the API', async () => {
    await withSyncedReflector({ backoffMs: 10 }, async (reflector) => {
      const { spawner } = spawnerFor({ client, reflector }, serverSpec('max', false, '', ''), traits());
      const started = Promise.all([spawner.start(), runWhenCreated('jupyter-max')]);
      await waitFor('the pod seen', () => reflector.items.get('jupyter-max'));
      // The pod runs while the watch is down and the history is compacted past it.
      fake.dropWatches();
      fake.compact();
      await started;
      await waitFor('a relist', () => reflector.lists >= 2);
      await waitFor(
        'the copy current',
        () =>
          (reflector.items.get('jupyter-max') as { status?: { phase?: string } })?.status?.phase ===
          'Running',
      );
      assert.ok(logs.has('watch resourceVersion expired (410 Gone); listing again'));
      await spawner.stop(true);
    });
  });

  test('the watch stops and starts again (leadership moving between replicas): stopped, nothing is open; started, it lists afresh', async () => {
    const reflector = new PodReflector(client, namespace, 'singleuser-server', log);
    reflector.start();
    reflector.start();
    await reflector.waitSynced(5000);
    await waitFor('watching', () => fake.openWatches === 1);
    await reflector.stop();
    assert.equal(reflector.running, false);
    assert.equal(reflector.synced, false);
    await waitFor('the watch closed', () => fake.openWatches === 0);
    const kube: KubeShared = { client, reflector };
    const { spawner } = spawnerFor(kube, serverSpec('ned', false, '', ''), traits());
    await Promise.all([spawner.start(), runWhenCreated('jupyter-ned')]);
    reflector.start();
    try {
      await reflector.waitSynced(5000);
      assert.equal(reflector.lists, 2);
      assert.ok(reflector.items.has('jupyter-ned'), 'a pod started while stopped is in the new list');
      assert.equal(await spawner.poll(), null);
      await spawner.stop(true);
    } finally {
      await reflector.stop();
    }
  });

  test('start during a stop that is still closing the watch keeps one watch running, with a fresh list', async () => {
    const reflector = new PodReflector(client, namespace, 'singleuser-server', log);
    reflector.start();
    await reflector.waitSynced(5000);
    const stopping = reflector.stop();
    reflector.start();
    await stopping;
    try {
      assert.equal(reflector.running, true);
      await waitFor('a fresh list', () => reflector.lists === 2);
      await waitFor('one watch open', () => fake.openWatches === 1);
    } finally {
      await reflector.stop();
    }
    await waitFor('none open', () => fake.openWatches === 0);
  });

  test('bookmarks advance the resourceVersion a resumed watch starts from', async () => {
    await withSyncedReflector({ backoffMs: 10 }, async () => {
      await waitFor('watching', () => fake.openWatches > 0);
      fake.event(namespace, 'nobody', 'Normal', 'Noise', 'raises the resourceVersion');
      const version = fake.resourceVersion;
      fake.bookmark();
      const before = fake.watchRequests('pods').length;
      await new Promise((resolve) => setTimeout(resolve, 50));
      fake.dropWatches();
      await waitFor('resumed', () => fake.watchRequests('pods').length > before);
      assert.equal(fake.watchRequests('pods').at(-1)!.query.resourceVersion, version);
    });
  });
});

describe('connections', () => {
  test('a kubeconfig with a CA file and a token user reaches the API', async () => {
    const file = join(dir, 'kubeconfig');
    writeFileSync(
      file,
      `apiVersion: v1
kind: Config
current-context: test
clusters:
  - name: fake
    cluster: { server: "${fake.url}", certificate-authority: ca.crt }
users:
  - name: hub
    user: { token: ${token} }
contexts:
  - name: test
    context: { cluster: fake, user: hub, namespace: ${namespace} }
`,
    );
    const connection = kubeconfigConnection(file);
    assert.equal(connection.namespace, namespace);
    const viaKubeconfig = new KubeClient(connection);
    try {
      const list = await viaKubeconfig.get<{ kind: string }>(`/api/v1/namespaces/${namespace}/pods`);
      assert.equal(list.kind, 'PodList');
    } finally {
      viaKubeconfig.close();
    }
  });

  test('a kubeconfig user with an exec plugin is refused with what to use instead', () => {
    const file = join(dir, 'kubeconfig-exec');
    writeFileSync(
      file,
      'current-context: c\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n',
    );
    assert.throws(() => kubeconfigConnection(file), /exec plugin.*use a token/);
  });

  test('in-cluster without a service account says what to mount', () => {
    assert.throws(
      () => inClusterConnection({ KUBERNETES_SERVICE_HOST: '127.0.0.1' }, join(dir, 'no-such-dir')),
      /automountServiceAccountToken/,
    );
  });
});
