import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { defaultEnvKeep, hostUrl, pythonJsonList, serverEnvironment } from './environment.ts';
import type { ServerSpec } from './spawner.ts';
import { TemplateError } from './spawner-errors.ts';

const getEnvScript = fileURLToPath(new URL('../../test/fixtures/jupyterhub-get-env.py', import.meta.url));

function spec(overrides: Partial<ServerSpec> = {}): ServerSpec {
  return {
    user: { name: 'alice', admin: false, groups: [] },
    serverName: 'gpu',
    apiToken: 'secret-token',
    oauthClientId: 'jupyterhub-user-alice-gpu',
    hubApiUrl: 'http://127.0.0.1:8081/jh/hub/api',
    baseUrl: '/jh/',
    servicePrefix: '/jh/user/alice/gpu/',
    oauthCallbackUrl: '/jh/user/alice/gpu/oauth_callback',
    oauthScopes: ['access:servers!server=alice/gpu', 'access:servers!user=alice'],
    oauthAccessScopes: ['access:servers!server=alice/gpu', 'access:servers!user=alice'],
    activityUrl: 'http://127.0.0.1:8081/jh/hub/api/users/alice/activity',
    userOptions: {},
    ...overrides,
  };
}

/** The same server described to JupyterHub 3.0's own Spawner.get_env. */
function jupyterhubEnv(input: Record<string, unknown>): Record<string, string> {
  const out = execFileSync('/usr/bin/python3', [getEnvScript], {
    input: JSON.stringify(input),
    encoding: 'utf8',
  });
  return JSON.parse(out) as Record<string, string>;
}

test("the environment equals JupyterHub 3.0's Spawner.get_env for the same server, name for name", () => {
  const parentEnv = { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8', CONFIGPROXY_AUTH_TOKEN: 'hub-secret' };
  for (const variant of [
    { adminAccess: false, allowed: [] as string[], debug: false },
    { adminAccess: true, allowed: ['self', 'read:users!user=alice', 'ünïcode'], debug: true },
  ]) {
    const ours = serverEnvironment(
      spec({ adminAccess: variant.adminAccess, oauthClientAllowedScopes: variant.allowed }),
      {
        ip: '127.0.0.1',
        port: 45678,
        environment: { EXTRA: 'x', JUPYTERHUB_API_URL: 'http://override/hub/api' },
        envKeep: ['PATH', 'LANG'],
        notebookDir: '/nb/{username}',
        defaultUrl: '/lab',
        debug: variant.debug,
        parentEnv,
      },
    );
    const theirs = jupyterhubEnv({
      hub_ip: '127.0.0.1',
      hub_port: 8081,
      hub_prefix: '/jh/hub/',
      name: 'alice',
      escaped_name: 'alice',
      user_url: '/jh/user/alice/',
      prefix: '/jh/user/alice/gpu/',
      server_name: 'gpu',
      ip: '127.0.0.1',
      port: 45678,
      token: 'secret-token',
      client_id: 'jupyterhub-user-alice-gpu',
      access_scopes: ['access:servers!server=alice/gpu', 'access:servers!user=alice'],
      allowed_scopes: variant.allowed,
      admin_access: variant.adminAccess,
      env_keep: [],
      environment: { EXTRA: 'x', JUPYTERHUB_API_URL: 'http://override/hub/api' },
      notebook_dir: '/nb/{username}',
      default_url: '/lab',
      debug: variant.debug,
    });
    // JupyterHub's env_keep reads its own process's environment; ours was given parentEnv.
    assert.deepEqual(ours, { ...theirs, PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' });
  }
});

test("only env_keep is inherited: the hub's own secrets never reach the server", () => {
  const env = serverEnvironment(spec(), {
    ip: '127.0.0.1',
    port: 1,
    parentEnv: { PATH: '/bin', CONFIGPROXY_AUTH_TOKEN: 'hub-secret', JUPYTER_PASSWORD: 'pw', LC_ALL: 'C' },
  });
  assert.equal(env.PATH, '/bin');
  assert.equal(env.LC_ALL, 'C');
  assert.equal(env.CONFIGPROXY_AUTH_TOKEN, undefined);
  assert.equal(env.JUPYTER_PASSWORD, undefined);
  assert.deepEqual(defaultEnvKeep, [
    'PATH',
    'PYTHONPATH',
    'CONDA_ROOT',
    'CONDA_DEFAULT_ENV',
    'VIRTUAL_ENV',
    'LANG',
    'LC_ALL',
    'JUPYTERHUB_SINGLEUSER_APP',
  ]);
});

test('Spawner.environment values are templates with escaped names, and they win over the defaults', () => {
  const env = serverEnvironment(spec({ user: { name: 'Bob/..', admin: true, groups: [] }, serverName: '' }), {
    ip: '127.0.0.1',
    port: 1,
    environment: {
      DATA_DIR: '/data/persistent/{user}',
      READ_ONLY: '{is_not_admin}',
      RAW: '{unescaped_username}',
      JUPYTERHUB_USER: 'overridden',
      JSONISH: '{{"a": 1}}',
    },
    notebookDir: '/home/{username}/work',
    parentEnv: {},
  });
  assert.equal(env.DATA_DIR, '/data/persistent/-42ob-2f-2e-2e');
  assert.equal(env.READ_ONLY, 'False');
  assert.equal(env.RAW, 'Bob/..');
  assert.equal(env.JUPYTERHUB_USER, 'overridden');
  assert.equal(env.JSONISH, '{"a": 1}');
  assert.equal(env.JUPYTERHUB_ROOT_DIR, '/home/-42ob-2f-2e-2e/work');
  assert.equal(env.JUPYTERHUB_SERVER_NAME, '');
});

test('a bad template in Spawner.environment throws a TemplateError naming the template', () => {
  assert.throws(
    () =>
      serverEnvironment(spec(), { ip: '127.0.0.1', port: 1, environment: { X: '{nope}' }, parentEnv: {} }),
    (error: unknown) => error instanceof TemplateError && error.message.includes('"{nope}"'),
  );
});

test('the service URL brackets IPv6 addresses and JSON lists are written as Python writes them', () => {
  assert.equal(hostUrl('::1', 8888), 'http://[::1]:8888');
  assert.equal(hostUrl('127.0.0.1', 8888), 'http://127.0.0.1:8888');
  const env = serverEnvironment(spec(), { ip: '::1', port: 8888, parentEnv: {} });
  assert.equal(env.JUPYTERHUB_SERVICE_URL, 'http://[::1]:8888/jh/user/alice/gpu/');
  assert.equal(pythonJsonList([]), '[]');
  assert.equal(pythonJsonList(['a', 'b"c', 'é\u007f\n']), '["a", "b\\"c", "\\u00e9\\u007f\\n"]');
});
