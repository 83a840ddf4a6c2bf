import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, flattenConfig } from '../config.ts';
import { containerName, volumeBinds } from './docker.ts';
import {
  checkDockerTrait,
  createBodyFromKwargs,
  hostConfigFromKwargs,
  shellSplit,
} from './docker-options.ts';
import { templateNamespace } from './templating.ts';

function config(values: Record<string, unknown>) {
  return buildConfig(flattenConfig(values, 'test').values, {});
}

test('DockerSpawner is a spawner_class; its traits and the Spawner traits it inherits are read', () => {
  const built = config({
    'JupyterHub.spawner_class': 'dockerspawner.DockerSpawner',
    DockerSpawner: {
      image: 'jupyter/datascience-notebook:python-3.11',
      network_name: 'jupyterhub-net',
      volumes: { 'jupyterhub-user-{username}': '/home/jovyan' },
      remove: true,
      pull_policy: 'Never',
      cmd: ['start-singleuser.sh'],
      mem_limit: '2G',
    },
  });
  assert.equal(built.spawnerClass, 'docker');
  assert.equal(built.docker?.image, 'jupyter/datascience-notebook:python-3.11');
  assert.equal(built.docker?.pull_policy, 'never');
  assert.deepEqual(built.docker?.cmd, ['start-singleuser.sh']);
  assert.equal(built.docker?.ip, null);
  assert.equal(built.traits['Spawner.mem_limit'], 2 * 1024 ** 3);
  assert.equal(config({ 'JupyterHub.spawner_class': 'DockerSpawner' }).docker?.cmd, null, "the image's CMD");
  assert.equal(config({}).docker, undefined);
});

test('malformed DockerSpawner settings stop the hub at start, naming the key', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['DockerSpawner.pull_policy', 'sometimes', /'ifnotpresent', 'always', 'never' or 'skip'/],
    ['DockerSpawner.volumes', { v: { mode: 'rw' } }, /\{bind, mode\}/],
    ['DockerSpawner.volumes', ['a'], /a mapping/],
    ['DockerSpawner.port', 70000, /a port/],
    ['DockerSpawner.image', 'bad image', /an image reference/],
    ['DockerSpawner.extra_host_config', { shm_size: 'lots' }, /shm_size: expected bytes/],
    ['DockerSpawner.extra_create_kwargs', { 'bad-key': 1 }, /unknown create key/],
    ['DockerSpawner.post_start_cmd', 42, /a command/],
    ['DockerSpawner.imagee', 'x', /did you mean 'DockerSpawner.image'/],
  ];
  for (const [key, value, message] of bad) {
    assert.throws(() => config({ [key]: value }), message, key);
  }
});

test('docker-py keywords become the Engine’s names', () => {
  assert.deepEqual(
    hostConfigFromKwargs({
      mem_limit: '512m',
      shm_size: '1g',
      cap_add: ['SYS_ADMIN'],
      read_only: true,
      extra_hosts: { db: '10.0.0.2' },
      devices: ['/dev/fuse'],
      port_bindings: { 8888: ['127.0.0.1'], '9000/udp': 9001 },
      device_requests: [{ driver: 'nvidia', count: -1, device_ids: null, capabilities: [['gpu']] }],
      Runtime: 'nvidia',
    }),
    {
      Memory: 512 * 1024 ** 2,
      ShmSize: 1024 ** 3,
      CapAdd: ['SYS_ADMIN'],
      ReadonlyRootfs: true,
      ExtraHosts: ['db:10.0.0.2'],
      Devices: [{ PathOnHost: '/dev/fuse', PathInContainer: '/dev/fuse', CgroupPermissions: 'rwm' }],
      PortBindings: {
        '8888/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }],
        '9000/udp': [{ HostIp: '', HostPort: '9001' }],
      },
      DeviceRequests: [{ Driver: 'nvidia', Count: -1, DeviceIDs: null, Capabilities: [['gpu']] }],
      Runtime: 'nvidia',
    },
  );
  assert.deepEqual(
    createBodyFromKwargs({
      user: 0,
      working_dir: '/home/jovyan',
      entrypoint: 'tini -g --',
      environment: { A: 1 },
      labels: ['x'],
    }),
    {
      User: '0',
      WorkingDir: '/home/jovyan',
      Entrypoint: ['tini', '-g', '--'],
      Env: ['A=1'],
      Labels: { x: '' },
    },
  );
  assert.deepEqual(shellSplit(`sh -c 'echo "a b"' c\\ d ""`), ['sh', '-c', 'echo "a b"', 'c d', '']);
  assert.throws(() => shellSplit('sh -c "open'), /unclosed quote/);
  assert.equal(checkDockerTrait('post_start_cmd', false), null);
});

test('container and volume names: DockerSpawner’s defaults, escaped users cannot reach host paths', () => {
  const traits = { prefix: 'jupyter', image: 'img', name_template: '' };
  const user = (name: string) => ({ user: { name, admin: false }, serverName: '' });
  assert.equal(containerName(user('alice'), traits), 'jupyter-alice');
  assert.equal(
    containerName({ ...user('alice'), serverName: 'GPU box' }, traits),
    'jupyter-alice--gpu-20box',
  );
  assert.equal(containerName(user('../Root'), traits), 'jupyter--2e-2e-2f-52oot');
  assert.throws(
    () => containerName(user('a'), { ...traits, name_template: '/{username}' }),
    /container name/,
  );
  const namespace = templateNamespace({ user: { name: '../../etc', admin: false }, serverName: '' });
  assert.deepEqual(
    volumeBinds(
      { volumes: { 'jupyterhub-user-{username}': '/home/jovyan' }, read_only_volumes: {} },
      namespace,
    ),
    ['jupyterhub-user--2e-2e-2f-2e-2e-2fetc:/home/jovyan:rw'],
  );
  assert.deepEqual(
    volumeBinds(
      {
        volumes: { '/srv/{username}': { bind: '/data', mode: 'z' } },
        read_only_volumes: { '/srv/shared': '/shared' },
      },
      namespace,
    ),
    ['/srv/-2e-2e-2f-2e-2e-2fetc:/data:z', '/srv/shared:/shared:ro'],
  );
  // A raw name in a volume key could name options or another path; refused.
  const raw = templateNamespace({ user: { name: 'a:/etc', admin: false }, serverName: '' });
  assert.throws(
    () => volumeBinds({ volumes: { '{unescaped_username}': '/home/jovyan' }, read_only_volumes: {} }, raw),
    /not a volume name or absolute host path/,
  );
  // A raw name of '..' in a host path would bind the parent directory (or /) into the container.
  const climber = templateNamespace({ user: { name: '..', admin: false }, serverName: '' });
  const climbing: Array<Record<string, string>> = [
    { '/home/{unescaped_username}': '/home/jovyan' },
    { '/srv/users/{raw_username}/..': '/data' },
    { '/srv/data': '/home/{unescaped_username}' },
    { '/srv/./data': '/x' },
  ];
  for (const volumes of climbing) {
    assert.throws(
      () => volumeBinds({ volumes, read_only_volumes: {} }, { ...climber, raw_username: '..' }),
      /not a volume name or absolute host path/,
      JSON.stringify(volumes),
    );
  }
  assert.throws(
    () => volumeBinds({ volumes: {}, read_only_volumes: { '/srv/{unescaped_username}': '/ro' } }, climber),
    /not a volume name or absolute host path/,
  );
});
