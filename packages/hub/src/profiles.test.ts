// profile_list in KubeSpawner's shape: parsed strictly, slugs as KubeSpawner makes them, the
// default chosen when none is asked, an unknown one refused naming the known ones.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildConfig, flattenConfig } from './config.ts';
import { chooseProfile, parseProfiles, slugOf } from './profiles.ts';

test('slugs come from display names as KubeSpawner makes them', () => {
  assert.equal(slugOf('Big <GPU> (A100)'), 'big-gpu-a100');
  assert.equal(slugOf('  Data science  '), 'data-science');
});

test('profile_list: KubeSpawner’s keys; the default, or the first, when none is asked; unknown ones refused', () => {
  const profiles = parseProfiles('Spawner.profile_list', [
    { display_name: 'Small', description: 'One core' },
    { display_name: 'Large', slug: 'large', default: true, kubespawner_override: { cpu_limit: 8 } },
  ]);
  assert.deepEqual(
    profiles.map((p) => [p.slug, p.default, p.override]),
    [
      ['small', false, {}],
      ['large', true, { cpu_limit: 8 }],
    ],
  );
  assert.equal(chooseProfile(profiles, undefined)?.slug, 'large');
  assert.equal(chooseProfile(profiles, 'small')?.slug, 'small');
  assert.equal(chooseProfile([profiles[0]!], '')?.slug, 'small');
  assert.equal(chooseProfile([], 'anything'), undefined);
  assert.throws(() => chooseProfile(profiles, 'huge'), /unknown profile "huge"; choose one of small, large/);
});

test('profile_list mistakes fail at start, naming the entry', () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ display_name: 'A', image: 'x' }, /\[0\]: unknown key 'image'/],
    [{ description: 'no name' }, /\[0\]\.display_name: expected a non-empty string/],
    [{ display_name: 'A', default: 'yes' }, /\[0\]\.default: expected a boolean/],
    [{ display_name: 'A', slug: 'a b' }, /\[0\]\.slug: expected letters/],
    [{ display_name: 'A', kubespawner_override: [] }, /kubespawner_override: expected a mapping/],
    [{ display_name: '!!!' }, /gives an empty slug/],
  ];
  for (const [entry, message] of bad) {
    assert.throws(() => parseProfiles('Spawner.profile_list', [entry]), message);
  }
  assert.throws(
    () => parseProfiles('p', [{ display_name: 'A' }, { display_name: 'a' }]),
    /\[1\]: slug 'a' twice/,
  );
  assert.throws(
    () =>
      parseProfiles('p', [
        { display_name: 'A', default: true },
        { display_name: 'B', default: true },
      ]),
    /more than one profile has default: true/,
  );
});

test('KubeSpawner.profile_list is read as Spawner.profile_list; IdleCuller values are checked', () => {
  const { values } = flattenConfig({ KubeSpawner: { profile_list: [{ display_name: 'CPU' }] } }, 'test');
  assert.equal(buildConfig(values, {}).spawner.profileList[0]?.slug, 'cpu');
  const culler = buildConfig({}, {}).culler;
  assert.deepEqual(culler, {
    enabled: false,
    timeoutMs: 3_600_000,
    cullEveryMs: 600_000,
    concurrency: 10,
    maxAgeMs: 0,
    cullUsers: false,
    removeNamedServers: false,
  });
  const build = (traits: Record<string, unknown>) => () => buildConfig(flattenConfig(traits, 't').values, {});
  assert.throws(build({ 'IdleCuller.concurrency': 0 }), /IdleCuller.concurrency: expected an integer ≥ 1/);
  assert.throws(build({ 'IdleCuller.timeout': -1 }), /IdleCuller.timeout: expected a number of seconds ≥ 0/);
  assert.throws(
    build({ 'IdleCuller.enabled': true, 'IdleCuller.cull_every': 0 }),
    /IdleCuller.cull_every: expected a number of seconds > 0/,
  );
});
