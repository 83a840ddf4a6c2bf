// Names and templates of the Kubernetes spawner. The slug and pod-name vectors are KubeSpawner's
// own expectations (its tests/test_slugs.py and test_spawner.py, read for compatibility): a hub
// moved from KubeSpawner finds its users' pods and PVCs under the same names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  applyKubeOverride,
  checkKubeTrait,
  defaultKubeTraits,
  escapeSlug,
  isValidLabel,
  KubeTraitError,
  type KubeTraits,
  kubeNames,
  multiSlug,
  parseBytes,
  podManifest,
  safeSlug,
} from './kube-objects.ts';
import type { ServerSpec } from './spawner.ts';
import { TemplateError } from './spawner-errors.ts';

const traits = (changes: Partial<KubeTraits> = {}): KubeTraits => ({
  ...defaultKubeTraits,
  namespace: 'hub',
  ...changes,
});

function spec(name: string, serverName = '', admin = false): ServerSpec {
  return {
    user: { name, admin, groups: [] },
    serverName,
    apiToken: 't'.repeat(32),
    oauthClientId: `jupyterhub-user-${name}`,
    hubApiUrl: 'http://hub:8081/hub/api',
    baseUrl: '/',
    servicePrefix: `/user/${name}/`,
    oauthCallbackUrl: `/user/${name}/oauth_callback`,
    oauthScopes: [],
    oauthAccessScopes: [],
    activityUrl: 'http://hub:8081/hub/api/users/x/activity',
    userOptions: {},
  };
}

describe('KubeSpawner slugs', () => {
  test('safe_slug gives KubeSpawner’s names for its own test vectors', () => {
    const vectors: Array<[string, string]> = [
      ['jupyter-alex', 'jupyter-alex'],
      ['jupyter-Alex', 'jupyter-alex---3a1c285c'],
      ['jupyter-üni', 'jupyter-ni---a5aaf5dd'],
      ['endswith-', 'endswith---165f1166'],
      ['user@email.com', 'user-email-com---0925f997'],
      ['user-_@_emailß.com', 'user-email-com---7e3a7efd'],
      ['has.dot', 'has-dot---03e27fdf'],
      ['z9', 'z9'],
      ['9z9', 'x-9z9---224de202'],
      ['-start', 'start---f587e2dc'],
      ['üser', 'ser---73506260'],
      ['username--servername', 'username-servername---d957f1de'],
      ['start---f587e2dc', 'start-f587e2dc---cc5bb9c9'],
      ['x'.repeat(63), 'x'.repeat(63)],
      ['x'.repeat(64), 'xxxxxxxxxxxxxxxxxxxxx---7ce10097'],
      ['', 'x---e3b0c442'],
    ];
    for (const [name, expected] of vectors) assert.equal(safeSlug(name), expected, name);
    assert.equal(safeSlug('x'.repeat(17), undefined, 16), 'xxxxx---d04fd59f');
    assert.throws(() => safeSlug('x'.repeat(16), undefined, 11), RangeError);
  });

  test('label slugs keep what a label may hold and hash the rest', () => {
    const vectors: Array<[string, string]> = [
      ['', ''],
      ['9a', '9a'],
      ['9.', 'x-9---99a1b84b'],
      ['AbC', 'AbC'],
      ['AbC.', 'abc---dbe8c5d1'],
      ['ab.c', 'ab.c'],
      ['a@b.c', 'a-b-c---d648b243'],
      ['-x', 'x---a4209624'],
      ['x-', 'x---c8b60efc'],
    ];
    for (const [name, expected] of vectors) assert.equal(safeSlug(name, isValidLabel), expected, name);
  });

  test('the escape scheme is escapism: every unsafe byte as -XX, so no name holds a dot or a slash', () => {
    assert.equal(escapeSlug('needs-Escape'), 'needs-2d-45scape');
    assert.equal(escapeSlug('../etc/passwd'), '-2e-2e-2fetc-2fpasswd');
    assert.equal(escapeSlug('ü'), '-c3-bc');
  });

  test('pod names are jupyter-{user_server} as KubeSpawner names them', () => {
    assert.equal(kubeNames(spec('user'), traits()).podName, 'jupyter-user');
    assert.equal(kubeNames(spec('user', 'server'), traits()).podName, 'jupyter-user--server');
    assert.equal(
      kubeNames(spec('some_user', 'test-server!'), traits()).podName,
      'jupyter-some-user---7d3a4d4e--test-server---cb54a9af',
    );
    assert.equal(
      kubeNames(spec('some_user'), traits({ pod_name_template: 'prefix-{user_server}-suffix' })).podName,
      'prefix-some-user---7d3a4d4e-suffix',
    );
    // user 'user-has-dash' and user 'user-has' with server 'dash' do not collide.
    assert.equal(kubeNames(spec('user-has-dash'), traits()).podName, 'jupyter-user-has-dash');
    assert.equal(kubeNames(spec('user-has', 'dash'), traits()).podName, 'jupyter-user-has--dash');
    assert.equal(kubeNames(spec('user-has', 'dash'), traits()).pvcName, 'claim-user-has--dash');
    assert.equal(
      kubeNames(spec('needs-Escape'), traits({ slug_scheme: 'escape' })).podName,
      'jupyter-needs-2d-45scape',
    );
  });

  test('long user and server names are cut to one name with one hash, within a DNS label', () => {
    const names = kubeNames(spec('a'.repeat(40), 'b'.repeat(30)), traits());
    assert.equal(names.podName, `jupyter-${multiSlug(['a'.repeat(40), 'b'.repeat(30)])}`);
    assert.match(names.podName, /^jupyter-a+--b+---[0-9a-f]{8}$/);
    assert.ok(names.podName.length <= 63);
    const other = kubeNames(spec('a'.repeat(40), `${'b'.repeat(30)}c`), traits());
    assert.notEqual(other.podName, names.podName);
  });

  test('a pod name template that renders an invalid name is refused with a TemplateError', () => {
    assert.throws(
      () => kubeNames(spec('bob'), traits({ pod_name_template: 'Pod_{unescaped_username}' })),
      TemplateError,
    );
  });
});

describe('DynamicKubeSpawner templating', () => {
  const dynamic = traits({
    volumes: [
      { name: 'home', hostPath: { path: '/data/{user}' } },
      { name: 'nfs', nfs: { server: 'nfs', path: '/exports/{user}/{is_admin}' } },
    ],
    volume_mounts: [
      { name: 'home', mountPath: '/home/{user}', subPath: '{user}', readOnly: '{is_not_admin}' },
      { name: 'nfs', mountPath: '/nfs', readOnly: '{is_admin}' },
    ],
    init_containers: [
      {
        name: 'init',
        image: 'busybox',
        volumeMounts: [{ name: 'home', mountPath: '/m/{user}', subPath: '{user}', readOnly: 'true' }],
      },
    ],
  });

  test('{user}, {is_admin} and {is_not_admin} render in paths, mounts and init containers; readOnly becomes a boolean', () => {
    const pod = podManifest({
      spec: spec('alice', '', false),
      traits: dynamic,
      names: kubeNames(spec('alice'), dynamic),
    }) as {
      spec: {
        volumes: unknown[];
        containers: Array<{ volumeMounts: unknown[] }>;
        initContainers: Array<{ volumeMounts: unknown[] }>;
      };
    };
    assert.deepEqual(pod.spec.volumes, [
      { name: 'home', hostPath: { path: '/data/alice' } },
      { name: 'nfs', nfs: { server: 'nfs', path: '/exports/alice/False' } },
    ]);
    assert.deepEqual(pod.spec.containers[0]!.volumeMounts, [
      { name: 'home', mountPath: '/home/alice', subPath: 'alice', readOnly: true },
      { name: 'nfs', mountPath: '/nfs', readOnly: false },
    ]);
    assert.deepEqual(pod.spec.initContainers[0]!.volumeMounts, [
      { name: 'home', mountPath: '/m/alice', subPath: 'alice', readOnly: true },
    ]);
    const admin = podManifest({
      spec: spec('root', '', true),
      traits: dynamic,
      names: kubeNames(spec('root'), dynamic),
    }) as {
      spec: { containers: Array<{ volumeMounts: Array<{ readOnly: boolean }> }> };
    };
    assert.deepEqual(
      admin.spec.containers[0]!.volumeMounts.map((m) => m.readOnly),
      [false, true],
    );
  });

  test('a user name cannot climb out of its directory: {user} is escaped', () => {
    for (const name of ['../../etc', '..', 'a/../../b', 'x/..', '.hidden']) {
      const pod = podManifest({
        spec: spec(name),
        traits: dynamic,
        names: kubeNames(spec(name), dynamic),
      }) as {
        spec: {
          volumes: Array<{ hostPath?: { path: string } }>;
          containers: Array<{ volumeMounts: Array<{ subPath?: string }> }>;
        };
      };
      const path = pod.spec.volumes[0]!.hostPath!.path;
      const subPath = pod.spec.containers[0]!.volumeMounts[0]!.subPath!;
      assert.match(path, /^\/data\/[a-z0-9-]+$/, name);
      assert.match(subPath, /^[a-z0-9-]+$/, name);
    }
  });
});

describe('KubeSpawner traits', () => {
  test('memory is JupyterHub’s ByteSpecification (powers of 1024)', () => {
    assert.equal(parseBytes('256M'), 268435456);
    assert.equal(parseBytes('32G'), 34359738368);
    assert.equal(parseBytes('1.5K'), 1536);
    assert.equal(parseBytes(1000), 1000);
    assert.throws(() => parseBytes('32Gi'), KubeTraitError);
  });

  test('a wrong type is refused with what was expected', () => {
    assert.throws(() => checkKubeTrait('services_enabled', 'yes'), /expected true or false/);
    assert.throws(() => checkKubeTrait('volumes', {}), /expected a list/);
    assert.throws(() => checkKubeTrait('no_such_trait', 1), /unknown KubeSpawner trait/);
  });

  test('kubespawner_override merges mappings (null deletes a key) and replaces the rest', () => {
    const base = traits({
      extra_resource_guarantees: { 'ephemeral-storage': '1G' },
      image: 'a',
      node_selector: { zone: 'x', pool: 'cpu' },
    });
    const out = applyKubeOverride(base, {
      extra_resource_guarantees: { 'nvidia.com/gpu': '1' },
      image: 'b',
      node_selector: { pool: 'gpu', zone: null },
    });
    assert.deepEqual(out.extra_resource_guarantees, { 'ephemeral-storage': '1G', 'nvidia.com/gpu': '1' });
    assert.equal(out.image, 'b');
    assert.deepEqual(out.node_selector, { pool: 'gpu' });
    assert.deepEqual(
      base.extra_resource_guarantees,
      { 'ephemeral-storage': '1G' },
      'the base is not changed',
    );
    assert.throws(() => applyKubeOverride(base, { mem_limit: 'lots' }), /kubespawner_override.mem_limit/);
  });

  test('node_selector, tolerations and extra_pod_config reach the pod spec; no service account means no token', () => {
    const t = traits({
      node_selector: { pool: 'gpu' },
      tolerations: [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }],
      extra_pod_config: { runtime_class_name: 'nvidia', dnsPolicy: 'ClusterFirst' },
    });
    const pod = podManifest({ spec: spec('bob'), traits: t, names: kubeNames(spec('bob'), t) }) as {
      spec: Record<string, unknown>;
    };
    assert.deepEqual(pod.spec.nodeSelector, { pool: 'gpu' });
    assert.deepEqual(pod.spec.tolerations, [{ key: 'gpu', operator: 'Exists', effect: 'NoSchedule' }]);
    assert.equal(pod.spec.runtimeClassName, 'nvidia');
    assert.equal(pod.spec.dnsPolicy, 'ClusterFirst');
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.equal(pod.spec.serviceAccountName, undefined);
  });
});
