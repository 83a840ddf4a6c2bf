// Golden pod manifests for seed 001's configuration (examples/seed-001-kubernetes.yaml):
// the CPU and GPU profiles for an admin and a non-admin user, compared field by field with the
// files beside it, and each one valid against the Kubernetes OpenAPI schema. UPDATE_GOLDEN=1
// rewrites the files (then read the diff: it is the review).
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { loadConfigFile } from '../src/config.ts';
import { chooseProfile } from '../src/profiles.ts';
import { applyKubeOverride, kubeNames, podManifest, serviceManifest } from '../src/spawners/kube-objects.ts';
import type { JsonValue } from '../src/spawners/spawner.ts';
import { serverSpec } from './kube-helpers.ts';

const fixtures = join(import.meta.dirname, 'fixtures', 'kube');

/** Every leaf path of a JSON value with its value, so a difference names its field. */
function leaves(value: JsonValue, path = ''): Map<string, JsonValue> {
  const out = new Map<string, JsonValue>();
  if (Array.isArray(value)) {
    if (value.length === 0) out.set(path, []);
    value.forEach((item, i) => {
      for (const [key, leaf] of leaves(item, `${path}[${i}]`)) out.set(key, leaf);
    });
  } else if (value !== null && typeof value === 'object') {
    if (Object.keys(value).length === 0) out.set(path, {});
    for (const [name, item] of Object.entries(value)) {
      for (const [key, leaf] of leaves(item, path ? `${path}.${name}` : name)) out.set(key, leaf);
    }
  } else out.set(path, value);
  return out;
}

function compareFieldByField(actual: JsonValue, golden: JsonValue): void {
  const got = leaves(actual);
  const want = leaves(golden);
  for (const [path, value] of want) {
    assert.ok(got.has(path), `field ${path} is missing (golden: ${JSON.stringify(value)})`);
    assert.deepEqual(got.get(path), value, `field ${path}`);
  }
  for (const path of got.keys()) assert.ok(want.has(path), `field ${path} is not in the golden manifest`);
}

const config = await loadConfigFile(join(import.meta.dirname, '..', 'examples', 'seed-001-kubernetes.yaml'), {
  CONFIGPROXY_AUTH_TOKEN: 'proxy-token',
  POD_NAMESPACE: 'jupyterhub',
});

const cases = [
  { file: 'pod-cpu-admin.json', user: 'kaidotio', admin: true, profile: 'standard-notebook' },
  { file: 'pod-cpu-user.json', user: 'alice', admin: false, profile: 'standard-notebook' },
  { file: 'pod-gpu-admin.json', user: 'kaidotio', admin: true, profile: 'gpu-notebook' },
  { file: 'pod-gpu-user.json', user: 'alice', admin: false, profile: 'gpu-notebook' },
];

describe('golden pod manifests of seed 001', () => {
  test('the seed config sets every KubeSpawner trait under its own name', () => {
    const kube = config.kube!;
    assert.equal(config.spawnerClass, 'kubernetes');
    assert.equal(kube.namespace, 'jupyterhub');
    assert.equal(kube.start_timeout, 300);
    assert.equal(kube.mem_guarantee, 256 * 1024 ** 2);
    assert.equal(kube.mem_limit, 32 * 1024 ** 3);
    assert.equal(kube.services_enabled, true);
    assert.deepEqual(
      config.spawner.profileList.map((p) => p.slug),
      ['standard-notebook', 'gpu-notebook'],
    );
  });

  for (const item of cases) {
    test(`${item.file}: ${item.profile} for ${item.admin ? 'an admin' : 'a user'} matches field by field and passes the schema`, () => {
      const spec = serverSpec(item.user, item.admin, '', item.profile);
      const profile = chooseProfile(config.spawner.profileList, item.profile)!;
      const traits = applyKubeOverride(config.kube!, profile.override);
      const pod = podManifest({ spec, traits, names: kubeNames(spec, traits) });
      const file = join(fixtures, item.file);
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, `${JSON.stringify(pod, null, 2)}\n`);
      new Pod(pod as never).validate();
      compareFieldByField(pod, JSON.parse(readFileSync(file, 'utf8')) as JsonValue);
    });
  }

  test('the DynamicKubeSpawner parts: subPath is the user, shared and torch are read-only for non-admins only', () => {
    for (const item of cases) {
      const spec = serverSpec(item.user, item.admin, '', item.profile);
      const traits = config.kube!;
      const pod = podManifest({ spec, traits, names: kubeNames(spec, traits) }) as {
        spec: {
          containers: Array<{ volumeMounts: Array<Record<string, unknown>> }>;
          initContainers: Array<{ volumeMounts: Array<Record<string, unknown>> }>;
        };
      };
      const mounts = pod.spec.containers[0]!.volumeMounts;
      assert.equal(mounts[0]!.subPath, item.user);
      assert.equal(mounts[1]!.readOnly, !item.admin);
      assert.equal(mounts[2]!.readOnly, !item.admin);
      assert.equal(mounts[3]!.readOnly, undefined);
      assert.equal(pod.spec.initContainers[0]!.volumeMounts[0]!.subPath, item.user);
    }
  });

  test('the GPU profile merges into the requests and limits and sets the runtime class; the CPU one does not', () => {
    const gpu = JSON.parse(readFileSync(join(fixtures, 'pod-gpu-user.json'), 'utf8'));
    const cpu = JSON.parse(readFileSync(join(fixtures, 'pod-cpu-user.json'), 'utf8'));
    assert.deepEqual(gpu.spec.containers[0].resources, {
      requests: { cpu: '1', memory: '268435456', 'ephemeral-storage': '1G', 'nvidia.com/gpu': '1' },
      limits: { cpu: '4', memory: '34359738368', 'nvidia.com/gpu': '1' },
    });
    assert.equal(gpu.spec.runtimeClassName, 'nvidia');
    assert.equal(cpu.spec.runtimeClassName, undefined);
    assert.deepEqual(cpu.spec.containers[0].resources.requests, {
      cpu: '1',
      memory: '268435456',
      'ephemeral-storage': '1G',
    });
  });

  test('the service of a pod selects it, is owned by it, and passes the schema', () => {
    const spec = serverSpec('alice', false, 'gpu box', 'gpu-notebook');
    const traits = config.kube!;
    const names = kubeNames(spec, traits);
    const pod = podManifest({ spec, traits, names }) as { metadata: { labels: Record<string, string> } };
    const service = serviceManifest({ spec, traits, names }, { name: names.podName, uid: 'u-1' }) as {
      metadata: { name: string; ownerReferences: unknown[] };
      spec: { selector: Record<string, string>; ports: unknown[] };
    };
    new Service(service as never).validate();
    assert.equal(service.metadata.name, names.podName);
    assert.deepEqual(service.spec.ports, [{ name: 'http', port: 8888, targetPort: 8888 }]);
    for (const [key, value] of Object.entries(service.spec.selector))
      assert.equal(pod.metadata.labels[key], value, key);
    assert.deepEqual(service.metadata.ownerReferences, [
      { apiVersion: 'v1', kind: 'Pod', name: names.podName, uid: 'u-1' },
    ]);
  });
});
