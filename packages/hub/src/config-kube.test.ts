// The Kubernetes spawner's configuration: KubeSpawner's trait names (and DynamicKubeSpawner's),
// traitlets' precedence of the subclass, types checked at start, profiles' overrides included.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, flattenConfig } from './config.ts';
import { ConfigError } from './errors.ts';

function load(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const { values } = flattenConfig(raw, 'hub.yaml');
  return buildConfig(values, env);
}

test('spawner_class names KubeSpawner as jupyterhub_config.py does', () => {
  for (const name of ['KubeSpawner', 'kubespawner.KubeSpawner', 'DynamicKubeSpawner']) {
    const config = load({ JupyterHub: { spawner_class: name } });
    assert.equal(config.spawnerClass, 'kubernetes', name);
    assert.ok(config.kube);
  }
  assert.equal(load({}).kube, undefined);
});

test('KubeSpawner.x wins over Spawner.x in either order, as traitlets gives the subclass precedence', () => {
  for (const raw of [
    { 'Spawner.start_timeout': 60, 'KubeSpawner.start_timeout': 300 },
    { 'KubeSpawner.start_timeout': 300, 'Spawner.start_timeout': 60 },
  ]) {
    const config = load({ 'JupyterHub.spawner_class': 'KubeSpawner', ...raw });
    assert.equal(config.kube!.start_timeout, 300);
    assert.equal(config.spawner.startTimeoutMs, 300_000);
  }
});

test('DynamicKubeSpawner: {...} takes the same traits', () => {
  const config = load({
    JupyterHub: { spawner_class: 'DynamicKubeSpawner' },
    DynamicKubeSpawner: { image: 'x:1', mem_limit: '1G', environment: { A: 'b' } },
  });
  assert.equal(config.kube!.image, 'x:1');
  assert.equal(config.kube!.mem_limit, 1024 ** 3);
  assert.deepEqual(config.kube!.environment, { A: 'b' });
});

test('a wrong type or an unknown trait stops the hub with the path and what was expected', () => {
  assert.throws(
    () => load({ 'KubeSpawner.services_enabled': 'yes' }),
    (error: Error) =>
      error instanceof ConfigError &&
      /KubeSpawner.services_enabled: expected true or false/.test(error.message),
  );
  assert.throws(
    () => load({ KubeSpawner: { image_pul_policy: 'Always' } }),
    /did you mean 'KubeSpawner.image_pull_policy'/,
  );
  assert.throws(() => load({ 'KubeSpawner.mem_limit': 'lots' }), /KubeSpawner.mem_limit: expected bytes/);
});

test('a profile override of the wrong type is refused at start, naming the profile', () => {
  assert.throws(
    () =>
      load({
        'JupyterHub.spawner_class': 'KubeSpawner',
        'KubeSpawner.profile_list': [{ display_name: 'GPU', kubespawner_override: { cpu_limit: 'four' } }],
      }),
    /profile_list 'gpu': kubespawner_override.cpu_limit: expected a number/,
  );
});

test('the namespace is KubeSpawner.namespace, else POD_NAMESPACE, else left to the API connection', () => {
  const kube = { 'JupyterHub.spawner_class': 'KubeSpawner' };
  assert.equal(load(kube, { POD_NAMESPACE: 'hub-ns' }).kube!.namespace, 'hub-ns');
  assert.equal(
    load({ ...kube, 'KubeSpawner.namespace': 'users' }, { POD_NAMESPACE: 'hub-ns' }).kube!.namespace,
    'users',
  );
  assert.equal(load(kube).kube!.namespace, '');
});

test('without Spawner.cmd the pod runs the image’s own command, as KubeSpawner', () => {
  assert.equal(load({ 'JupyterHub.spawner_class': 'KubeSpawner' }).kube!.cmd, null);
  assert.deepEqual(
    load({ 'JupyterHub.spawner_class': 'KubeSpawner', 'KubeSpawner.cmd': 'start.sh' }).kube!.cmd,
    ['start.sh'],
  );
});

test('callable traits come only as functions (a JS/TS config module); affinity traits are lists', () => {
  const uid = () => 1000;
  const { hooks, values } = flattenConfig(
    { KubeSpawner: { uid, modify_pod_hook: (_s: unknown, pod: unknown) => pod, profile_list: () => [] } },
    'hub.ts',
  );
  assert.equal(hooks.kube?.uid, uid);
  assert.deepEqual(Object.keys(hooks.kube ?? {}).sort(), ['modify_pod_hook', 'profile_list', 'uid']);
  assert.equal(values['KubeSpawner.uid'], undefined);
  assert.throws(
    () => load({ 'KubeSpawner.modify_pod_hook': 'pods.modify' }),
    /KubeSpawner.modify_pod_hook: expected a function \(spawner, pod\) => pod/,
  );
  assert.throws(() => load({ 'KubeSpawner.uid': 'root' }), ConfigError);
  assert.throws(() => load({ 'KubeSpawner.node_affinity_required': { key: 'x' } }), /node_affinity_required/);
  const config = load({
    'JupyterHub.spawner_class': 'KubeSpawner',
    'KubeSpawner.pod_anti_affinity_preferred': [{ weight: 1, podAffinityTerm: { topologyKey: 'h' } }],
  });
  assert.equal(config.kube?.pod_anti_affinity_preferred.length, 1);
});

test('Leadership.interval, timeout and gone_after are seconds > 0', () => {
  assert.deepEqual(load({ Leadership: { interval: 0.5, timeout: 1, gone_after: 4 } }).leadership, {
    intervalMs: 500,
    timeoutMs: 1000,
    goneAfterMs: 4000,
  });
  assert.deepEqual(load({}).leadership, { intervalMs: 1000, timeoutMs: 2000, goneAfterMs: 3000 });
  assert.throws(
    () => load({ 'Leadership.interval': 0 }),
    /Leadership.interval: expected a number of seconds > 0/,
  );
});
