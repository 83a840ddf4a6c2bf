import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, flattenConfig } from '../config.ts';
import { containerName, volumeBinds } from './docker.ts';
import {
  type AllowedImages,
  checkDockerTrait,
  checkHostPaths,
  createBodyFromKwargs,
  hostConfigFromKwargs,
  imageChoices,
  imageForSpawn,
  shellSplit,
} from './docker-options.ts';
import type { JsonObject } from './spawner.ts';
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
  assert.equal(built.docker?.hostIpSet, false, 'host_ip may follow a tcp:// DOCKER_HOST');
  assert.equal(
    config({ 'JupyterHub.spawner_class': 'DockerSpawner', 'DockerSpawner.host_ip': '127.0.0.1' }).docker
      ?.hostIpSet,
    true,
  );
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

test('allowed_images as DockerSpawner 13 checks it: a list or a name → image mapping, or *; user_options.image only from it', () => {
  const listed = config({
    'JupyterHub.spawner_class': 'DockerSpawner',
    'DockerSpawner.allowed_images': ['img/a:1', 'img/b:2'],
  }).docker!;
  // A list is a mapping of each image to itself (DockerSpawner's _validate_allowed_images).
  assert.deepEqual(listed.allowed_images, { 'img/a:1': 'img/a:1', 'img/b:2': 'img/b:2' });
  assert.deepEqual(imageForSpawn(listed, { image: 'img/b:2' }), { image: 'img/b:2' });
  assert.deepEqual(imageForSpawn(listed, {}), { image: listed.image }, 'no choice: DockerSpawner.image');
  assert.deepEqual(imageForSpawn(listed, { image: '' }), { image: listed.image }, "Python's falsy choice");
  assert.deepEqual(imageForSpawn(listed, { image: 'evil/miner' }), {
    refused: 'Image evil/miner not in allowed list: img/a:1, img/b:2',
  });
  assert.deepEqual(imageChoices(listed), ['img/a:1', 'img/b:2']);

  const named = { image: 'base:1', allowed_images: { 'Data science': 'ds:3', Minimal: 'base:1' } };
  assert.deepEqual(imageForSpawn(named, { image: 'Data science' }), { image: 'ds:3' });
  // A mapping is chosen by its names, never by the image behind a name.
  assert.deepEqual(imageForSpawn(named, { image: 'ds:3' }), {
    refused: 'Image ds:3 not in allowed list: Data science, Minimal',
  });
  for (const hostile of ['__proto__', 'constructor', 'toString']) {
    assert.ok('refused' in imageForSpawn(named, { image: hostile }), hostile);
  }
  assert.match(
    (imageForSpawn(named, { image: { $ne: 1 } }) as { refused: string }).refused,
    /user_options.image must be a string/,
  );
  assert.equal(
    (imageForSpawn(named, { image: 'x'.repeat(5000) }) as { refused: string }).refused.length < 300,
    true,
  );

  // Empty (the default): `image` only, and a choice is refused (DockerSpawner 13).
  const none = { image: 'base:1', allowed_images: {} };
  assert.deepEqual(imageForSpawn(none, {}), { image: 'base:1' });
  assert.deepEqual(imageForSpawn(none, { image: 'base:1' }), {
    refused: 'Specifying image to launch is not allowed',
  });
  assert.deepEqual(imageChoices(none), []);
  // One allowed image: no form; asking for it is allowed, asking for nothing runs `image`.
  const one = { image: 'base:1', allowed_images: { only: 'only:1' } };
  assert.deepEqual(imageChoices(one), []);
  assert.deepEqual(imageForSpawn(one, { image: 'only' }), { image: 'only:1' });
  assert.deepEqual(imageForSpawn(one, {}), { image: 'base:1' });
  // '*': any image reference, and no form.
  const any = { image: 'base:1', allowed_images: '*' as const };
  assert.deepEqual(imageForSpawn(any, { image: 'registry:5000/x/y:z' }), { image: 'registry:5000/x/y:z' });
  assert.match(
    (imageForSpawn(any, { image: '-v /:/host' }) as { refused: string }).refused,
    /not an image reference/,
  );
  assert.deepEqual(imageChoices(any), []);

  const bad: Array<[unknown, RegExp]> = [
    ['img/a:1', /'\*' \(all images\) is the only accepted string value .* Use a list: \["img\/a:1"\]/],
    [['ok:1', 'bad image'], /expected an image reference/],
    [{ Name: 42 }, /"Name": expected an image reference/],
    [{ ' ': 'x:1' }, /an empty display name/],
    [42, /a list of images, a mapping of display name → image, or '\*'/],
  ];
  for (const [value, message] of bad) {
    assert.throws(
      () => config({ 'JupyterHub.spawner_class': 'DockerSpawner', 'DockerSpawner.allowed_images': value }),
      message,
      JSON.stringify(value),
    );
  }
});

test('binds and mounts of extra_host_config hold to what volumes holds to: no climbing out with . or .., no extra : field', () => {
  checkHostPaths({
    Binds: ['vol:/data', '/srv/shared:/shared:ro', 'a.b:/x:z', '/srv/{raw_username}:/home/jovyan'],
    Mounts: [
      { Type: 'bind', Source: '/srv/x', Target: '/x', ReadOnly: true },
      { Type: 'volume', Source: 'v', Target: '/v' },
      { Type: 'volume', Target: '/anonymous' },
      { Type: 'tmpfs', Target: '/t' },
      // An object has no fields to shift: a raw name with ':' is only a character there.
      { Type: 'bind', Source: '/srv/eve:ro', Target: '/home/eve:ro' },
    ],
  });
  const refused: Array<[JsonObject, RegExp]> = [
    [{ Binds: ['/srv/alice/..:/data'] }, /binds: "\/srv\/alice\/..:\/data" is not source:target\[:mode\]/],
    [{ Binds: ['/srv/x:/data/../etc'] }, /binds:/],
    [{ Binds: ['/srv/./x:/data'] }, /binds:/],
    // A raw name holding ':' ('eve:ro') would move the target and mode along.
    [{ Binds: ['/srv/eve:ro:/data'] }, /binds:/],
    [{ Binds: ['/srv/a:b:/data:rw'] }, /binds:/],
    [{ Binds: ['relative/path:/x'] }, /binds:/],
    [{ Binds: ['/srv/x'] }, /binds:/],
    [{ Binds: [42] }, /binds:/],
    [{ Binds: 'x:/y' }, /binds: expected a list/],
    [{ Mounts: [{ Type: 'bind', Source: '/srv/../etc', Target: '/x' }] }, /mounts: .* is not a mount/],
    [{ Mounts: [{ Type: 'bind', Source: 'vol', Target: '/x' }] }, /mounts:/],
    [{ Mounts: [{ Type: 'bind', Source: '/srv/x', Target: '../x' }] }, /mounts:/],
    [{ Mounts: [{ Type: 'volume', Source: '../x', Target: '/x' }] }, /mounts:/],
    [{ Mounts: ['/srv:/x'] }, /mounts:/],
  ];
  for (const [hostConfig, message] of refused) {
    assert.throws(() => checkHostPaths(hostConfig), message, JSON.stringify(hostConfig));
  }
  // In the config as written: a literal '..' stops the hub at start, docker-py's spelling or the Engine's.
  const bad: Array<[string, unknown, RegExp]> = [
    ['DockerSpawner.extra_host_config', { binds: ['/srv/..:/data'] }, /extra_host_config: binds:/],
    [
      'DockerSpawner.extra_host_config',
      { binds: { '/srv/{raw_username}/..': { bind: '/x', mode: 'ro' } } },
      /binds:/,
    ],
    ['DockerSpawner.extra_host_config', { Binds: ['/:/host:rw:extra'] }, /binds:/],
    [
      'DockerSpawner.extra_host_config',
      { mounts: [{ type: 'bind', source: '/srv/{raw_username}/../..', target: '/x' }] },
      /extra_host_config: mounts:/,
    ],
    [
      'DockerSpawner.extra_create_kwargs',
      { host_config: { binds: ['/srv/..:/x'] } },
      /extra_create_kwargs: host_config.binds:/,
    ],
  ];
  for (const [key, value, message] of bad) {
    assert.throws(() => config({ 'JupyterHub.spawner_class': 'DockerSpawner', [key]: value }), message, key);
  }
});

test("allowed_images '*' takes a user's image only as Docker's reference grammar has it: no '..', '.' or empty path parts, lower-case paths", () => {
  const any = { image: 'base:1', allowed_images: '*' as const };
  const digest = `sha256:${'ab'.repeat(32)}`;
  for (const image of [
    'img',
    'img:1.0-rc_2',
    'team/img',
    'a_b/c__d/e-f/g--h/i.j',
    'localhost:5000/team/img:1',
    'quay.io/jupyterhub/singleuser:latest',
    `quay.io/jupyterhub/singleuser@${digest}`,
    `registry.example:443/x/y:z@${digest}`,
    'Registry.Example/x',
  ]) {
    assert.deepEqual(imageForSpawn(any, { image }), { image }, image);
  }
  // The engine answers these with a redirect (its router cleans '..', '.' and '//' out of the
  // path) or an invalid-reference error — after the spawn was claimed; refused with 400 instead.
  for (const image of [
    'x/../y',
    'x/./y',
    'a//b',
    'a/',
    'Upper/case',
    'a:b:c',
    'a@b',
    'a@sha256:12',
    'x/.hidden',
    'a..b',
    'a.-b',
    `a:${'t'.repeat(129)}`,
    `${'x'.repeat(250)}/${'y'.repeat(10)}`,
  ]) {
    const answer = imageForSpawn(any, { image });
    assert.ok('refused' in answer, image);
    assert.match(answer.refused, /is not an image reference/, image);
  }
});

test("allowed_images names that are Object.prototype's own ('__proto__', 'constructor') are kept as names, not dropped or inherited", () => {
  const traits = {
    image: 'base:1',
    allowed_images: checkDockerTrait(
      'allowed_images',
      JSON.parse('{"__proto__": "proto:1", "constructor": "ctor:1", "B": "b:1"}'),
    ) as AllowedImages,
  };
  assert.deepEqual(imageChoices(traits), ['__proto__', 'constructor', 'B']);
  assert.deepEqual(imageForSpawn(traits, JSON.parse('{"image": "__proto__"}')), { image: 'proto:1' });
  assert.deepEqual(imageForSpawn(traits, { image: 'constructor' }), { image: 'ctor:1' });
  assert.match(
    (imageForSpawn(traits, { image: 'toString' }) as { refused: string }).refused,
    /not in allowed list: __proto__, constructor, B/,
  );
  const listed = checkDockerTrait('allowed_images', ['__proto__', 'x:1']) as AllowedImages;
  assert.deepEqual(Object.keys(listed), ['__proto__', 'x:1']);
});
