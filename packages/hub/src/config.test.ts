import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { buildConfig, flattenConfig, generateConfig, loadConfigFile } from './config.ts';

const examples = new URL('../examples/', import.meta.url);

function load(raw: unknown, env: NodeJS.ProcessEnv = {}) {
  const { values, hooks } = flattenConfig(raw, 'hub.yaml');
  return buildConfig(values, env, hooks);
}

test('defaults equal JupyterHub’s', () => {
  const config = load({}, { JUPYTER_PASSWORD: 'x' });
  assert.equal(config.dbUrl, 'sqlite:///jupyterhub.sqlite');
  assert.equal(config.bindUrl.port, '8000');
  assert.deepEqual(config.hubBind, { host: '127.0.0.1', port: 8081 });
  assert.equal(config.hubConnectUrl, 'http://127.0.0.1:8081');
  assert.equal(config.proxy.apiUrl, 'http://127.0.0.1:8001');
  assert.equal(config.cleanupServers, true);
  assert.deepEqual(config.spawner.cmd, ['jupyterhub-singleuser']);
  assert.equal(config.spawner.startTimeoutMs, 60_000);
  assert.equal(config.pageMaxLimit, 200);
});

test('nested Class: {trait} and flat Class.trait keys mean the same', () => {
  const nested = load({ JupyterHub: { allow_named_servers: true, named_server_limit_per_user: 3 } });
  const flat = load({ 'JupyterHub.allow_named_servers': true, 'JupyterHub.named_server_limit_per_user': 3 });
  assert.equal(nested.allowNamedServers, true);
  assert.equal(flat.namedServerLimitPerUser, 3);
  assert.deepEqual(nested.traits, flat.traits);
});

test('an unknown key fails naming the key and the nearest known one', () => {
  assert.throws(() => load({ JupyterHub: { allow_named_server: true } }), {
    code: 'HUB_CONFIG',
    message:
      "hub.yaml: unknown key 'JupyterHub.allow_named_server'; did you mean 'JupyterHub.allow_named_servers'?",
  });
  assert.throws(() => load({ Spawnr: { cmd: 'x' } }), /unknown key 'Spawnr'.*e\.g\. 'Spawner\./);
  assert.throws(
    () => load({ JupyterHub: { services: [{ name: 'culler', api_tokn: 'abcdefgh12' }] } }),
    /JupyterHub.services\[0\]: unknown key 'api_tokn'; did you mean 'api_token'\?/,
  );
});

test('a wrong type fails naming the path and the expected type', () => {
  assert.throws(() => load({ JupyterHub: { allow_named_servers: 'yes' } }), {
    message: 'JupyterHub.allow_named_servers: expected a boolean (true or false), got a string ("yes")',
  });
  assert.throws(
    () => load({ Authenticator: { admin_users: 'alice' } }),
    /Authenticator.admin_users: expected a list of strings/,
  );
  assert.throws(
    () => load({ Spawner: { args: ['--a', 3] } }),
    /Spawner.args\[1\]: expected a string, got a number/,
  );
  assert.throws(() => load({ JupyterHub: { named_server_limit_per_user: 1.5 } }), /expected an integer/);
  assert.throws(() => load({ JupyterHub: { db_url: 'mysql://x' } }), /JupyterHub.db_url: expected sqlite/);
  assert.throws(
    () => load({ JupyterHub: { authenticator_class: 'pam' } }),
    /authenticator_class: expected one of/,
  );
});

test('secrets come from the environment', () => {
  const config = load(
    { JupyterHub: { authenticator_class: 'password' } },
    { CONFIGPROXY_AUTH_TOKEN: 'proxy-secret', JUPYTER_PASSWORD: 'pw' },
  );
  assert.equal(config.proxy.authToken, 'proxy-secret');
  assert.equal(config.auth.password, 'pw');
});

test("the seed's translated configs load, with every trait the seeds set", async () => {
  const env = { JUPYTERHUB_IDLE_CULLER_TOKEN: 'culler-token-123456', CONFIGPROXY_AUTH_TOKEN: 't' };
  const seed1 = await loadConfigFile(new URL('seed-001.yaml', examples).pathname, env);
  assert.equal(seed1.authenticatorClass, 'header');
  assert.equal(seed1.allowNamedServers, true);
  assert.equal(seed1.proxy.shouldStart, false);
  assert.equal(seed1.services[0]?.apiToken, 'culler-token-123456');
  assert.deepEqual(seed1.loadRoles[0]?.services, ['jupyterhub-idle-culler']);
  assert.deepEqual(seed1.spawner.cmd, ['jupyterhub-singleuser']);
  assert.equal(seed1.hubConnectUrl, 'http://jupyterhub-hub:8081');
  const seed2 = await loadConfigFile(new URL('seed-002.yaml', examples).pathname, { JUPYTER_PASSWORD: 'pw' });
  assert.equal(seed2.authenticatorClass, 'password');
  assert.match(seed2.dbUrl, /^postgresql:/);
  const traitsSet = [
    'JupyterHub.bind_url',
    'JupyterHub.base_url',
    'JupyterHub.hub_bind_url',
    'JupyterHub.hub_connect_url',
    'JupyterHub.db_url',
    'JupyterHub.admin_access',
    'JupyterHub.allow_named_servers',
    'JupyterHub.named_server_limit_per_user',
    'JupyterHub.concurrent_spawn_limit',
    'JupyterHub.cleanup_servers',
    'JupyterHub.services',
    'JupyterHub.load_roles',
    'JupyterHub.last_activity_interval',
    'JupyterHub.authenticate_prometheus',
    'JupyterHub.authenticator_class',
    'JupyterHub.spawner_class',
    'Authenticator.admin_users',
    'Authenticator.allow_all',
    'Authenticator.allowed_users',
    'Authenticator.auto_login',
    'ConfigurableHTTPProxy.should_start',
    'ConfigurableHTTPProxy.auth_token',
    'ConfigurableHTTPProxy.api_url',
    'ConfigurableHTTPProxy.command',
    'Spawner.cmd',
    'Spawner.args',
    'Spawner.environment',
    'Spawner.start_timeout',
    'Spawner.http_timeout',
    'Spawner.poll_interval',
    'Spawner.default_url',
    'Spawner.notebook_dir',
  ];
  for (const trait of traitsSet) assert.ok(trait in seed1.traits, `${trait} is accepted`);
});

test('a $-brace reference to a variable the environment does not set fails naming it', async () => {
  await assert.rejects(
    loadConfigFile(new URL('seed-001.yaml', examples).pathname, {}),
    /refers to \$\{JUPYTERHUB_IDLE_CULLER_TOKEN\}, which is not set/,
  );
});

test('--generate-config output is valid YAML that loads to the defaults', () => {
  const text = generateConfig();
  assert.match(text, /# allow_named_servers: false/);
  const config = load(parse(text), { JUPYTER_PASSWORD: 'x' });
  assert.equal(config.allowNamedServers, false);
});

test('a JS config module may export hooks such as pre_spawn_hook', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-config-'));
  try {
    const file = join(dir, 'hub.config.mjs');
    writeFileSync(
      file,
      "export default { JupyterHub: { authenticator_class: 'dummy' }, Spawner: { pre_spawn_hook: (s) => s.user } };\n",
    );
    const config = await loadConfigFile(file, {});
    assert.equal(typeof config.hooks.preSpawnHook, 'function');
    assert.equal(config.authenticatorClass, 'dummy');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hook in YAML is refused', () => {
  assert.throws(
    () => load({ Spawner: { pre_spawn_hook: 'x' } }),
    /Spawner.pre_spawn_hook: expected a function/,
  );
});
