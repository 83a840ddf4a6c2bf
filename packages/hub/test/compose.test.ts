// deploy/compose (seed 002's stack) as Debian's docker-compose 1.29 reads it, and brought up
// for real on the test engine with the images built locally and a host-network variant of
// compose.yaml (the test engine has no bridge): sign in with the password, spawn, reach the
// server through the proxy, write a file, restart the stack, find the file in the user's volume.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Dockerd, freePort, startDockerd, waitFor } from '@seahorse/runtime/testing';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { buildImages, imageTags } from '../../../scripts/images.ts';
import { loadConfigFile } from '../src/config.ts';
import { signIn } from './helpers.ts';

const composeDir = new URL('../../../deploy/compose/', import.meta.url).pathname;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A copy of deploy/compose with a stack.env, so the checkout is never written to. */
function stackCopy(env: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'compose-'));
  dirs.push(dir);
  cpSync(composeDir, join(dir, 'deploy/compose'), {
    recursive: true,
    filter: (src) => !src.endsWith('stack.env') || src.endsWith('example-stack.env'),
  });
  writeFileSync(join(dir, 'deploy/compose/stack.env'), env, { mode: 0o600 });
  return join(dir, 'deploy/compose');
}

function compose(dir: string, args: string[]) {
  return spawnSync('docker-compose', ['--env-file', 'stack.env', ...args], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, COMPOSE_PROJECT_NAME: 'jupyterhub', DOCKER_HOST: 'unix:///nonexistent.sock' },
    timeout: 60_000,
  });
}

const realEnv = [
  'CONFIGPROXY_AUTH_TOKEN=1f0a7c0e5b2d4e8f9a6b3c1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5',
  'JUPYTER_PASSWORD=correct horse battery staple',
  'JUPYTER_ADMIN_USER=alice',
  'POSTGRES_PASSWORD=pg/with+odd=chars',
  'JUPYTER_DOMAIN=notebooks.example.net',
  'TZ=Europe/Berlin',
  'OPENAI_API_KEY=',
  'ANTHROPIC_API_KEY=',
  '',
].join('\n');

interface ComposeConfig {
  services: Record<
    string,
    {
      image?: string;
      labels?: Record<string, string>;
      networks?: Record<string, unknown>;
      volumes?: Array<string | { source?: string; target: string }>;
      read_only?: boolean;
      user?: string;
      environment?: Record<string, string>;
      profiles?: string[];
    }
  >;
  networks: Record<string, { name?: string; external?: boolean }>;
  volumes: Record<string, { name?: string }>;
}

test("docker-compose 1.29 validates seed 002's stack: proxy, hub, PostgreSQL, networks, volumes, Traefik labels", () => {
  const dir = stackCopy(realEnv);
  const result = compose(dir, ['config']);
  assert.equal(result.status, 0, result.stderr);
  const config = parseYaml(result.stdout) as ComposeConfig;
  assert.deepEqual(Object.keys(config.services).sort(), ['jupyterhub', 'postgres', 'proxy', 'singleuser']);
  // The single-user image is only built (profile build), never started with the stack.
  assert.deepEqual(config.services.singleuser?.profiles, ['build']);
  const { proxy, jupyterhub, postgres } = config.services as Required<ComposeConfig['services']>;
  assert.equal(proxy?.labels?.['traefik.http.routers.jupyterhub.rule'], 'Host(`notebooks.example.net`)');
  assert.equal(proxy?.labels?.['traefik.docker.network'], 'traefik_default');
  assert.deepEqual(Object.keys(proxy?.networks ?? {}).sort(), ['jupyterhub-net', 'traefik_default']);
  assert.equal(proxy?.read_only, true);
  assert.equal(proxy?.user, '65534:65534');
  assert.equal(jupyterhub?.read_only, true);
  // 1.29 prints short volume syntax (source:target:mode), v2 the long one.
  const mounts = (jupyterhub?.volumes ?? []).map((v) =>
    typeof v === 'string' ? { source: v.split(':')[0], target: v.split(':')[1] } : v,
  );
  assert.ok(mounts.some((v) => v.source === 'jupyterhub_data' && v.target === '/data'));
  assert.ok(mounts.some((v) => v.target === '/var/run/docker.sock'));
  assert.equal(jupyterhub?.environment?.DOCKER_NETWORK_NAME, 'jupyterhub-net');
  assert.equal(postgres?.environment?.POSTGRES_DB, 'jupyterhub');
  assert.deepEqual(config.networks['jupyterhub-net'], { name: 'jupyterhub-net' });
  assert.equal(config.networks.traefik_default?.external, true);
  assert.equal(config.volumes.jupyterhub_data?.name, 'jupyterhub_data');
  // The secrets come from stack.env, each only to the services that use it.
  assert.equal(jupyterhub?.environment?.POSTGRES_PASSWORD, 'pg/with+odd=chars');
  const secrets = [
    'CONFIGPROXY_AUTH_TOKEN',
    'JUPYTER_PASSWORD',
    'POSTGRES_PASSWORD',
    'OPENAI_API_KEY',
    'ANTHROPIC_API_KEY',
  ];
  const given = (service: { environment?: Record<string, string> } | undefined) =>
    secrets.filter((name) => service?.environment?.[name] !== undefined);
  assert.deepEqual(given(proxy), ['CONFIGPROXY_AUTH_TOKEN']);
  assert.deepEqual(given(postgres), ['POSTGRES_PASSWORD']);
  assert.deepEqual(given(jupyterhub), secrets);
  const file = readFileSync(join(composeDir, 'compose.yaml'), 'utf8');
  assert.doesNotMatch(file, /env_file/, 'no service gets the whole stack.env');
  for (const value of realEnv.split('\n').map((line) => line.split('=').slice(1).join('='))) {
    if (value.length > 8) assert.ok(!file.includes(value), 'compose.yaml holds no secret value');
  }
  // No top-level name: (1.29 rejects it); the project name comes from COMPOSE_PROJECT_NAME.
  assert.equal((parseYaml(file) as { name?: string }).name, undefined);
});

test('the build profile adds the single-user image on the datascience-notebook base', () => {
  const dir = stackCopy(realEnv);
  const result = compose(dir, ['--profile', 'build', 'config']);
  assert.equal(result.status, 0, result.stderr);
  const config = parseYaml(result.stdout) as ComposeConfig & {
    services: { singleuser: { image: string; build: { args: Record<string, string> } } };
  };
  assert.equal(config.services.singleuser.image, 'personal-jupyter-singleuser:latest');
  assert.equal(config.services.singleuser.build.args.BASE_IMAGE, 'jupyter/datascience-notebook:python-3.11');
});

test('without JUPYTER_DOMAIN compose refuses the stack, saying where to set it', () => {
  const dir = stackCopy(realEnv.replace(/^JUPYTER_DOMAIN=.*$/m, ''));
  const result = compose(dir, ['config', '-q']);
  assert.notEqual(result.status, 0);
  assert.match(result.stderr, /set JUPYTER_DOMAIN in stack.env/);
});

test('build.sh refuses to run without stack.env; the example is the template and stack.env is ignored by git', () => {
  const dir = stackCopy('');
  rmSync(join(dir, 'stack.env'));
  const result = spawnSync('sh', [join(dir, 'build.sh')], {
    encoding: 'utf8',
    env: { ...process.env, PATH: '/usr/bin:/bin' },
  });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /cp example-stack.env stack.env && chmod 600 stack.env/);
  assert.equal(statSync(join(composeDir, 'build.sh')).mode & 0o111, 0o111);
  assert.match(readFileSync(join(composeDir, '.gitignore'), 'utf8'), /^stack\.env$/m);
});

test("hub.config.mjs is a valid hub config: DockerSpawner on jupyterhub-net with the user's volume at /home/jovyan, PostgreSQL with the URL-encoded password", async () => {
  const env = {
    CONFIGPROXY_AUTH_TOKEN: 'a'.repeat(64),
    JUPYTER_PASSWORD: 'pw',
    JUPYTER_ADMIN_USER: 'alice',
    POSTGRES_PASSWORD: 'p/w+d=',
    TZ: 'Europe/Berlin',
    OPENAI_API_KEY: 'sk-test',
  };
  // The module reads process.env when imported (once per process), as it does in the hub.
  const saved = { ...process.env };
  Object.assign(process.env, env);
  const config = await loadConfigFile(join(composeDir, 'hub.config.mjs'), process.env).finally(() => {
    for (const name of Object.keys(env)) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });
  assert.equal(config.spawnerClass, 'docker');
  assert.equal(config.dbUrl, 'postgresql://jupyterhub:p%2Fw%2Bd%3D@postgres:5432/jupyterhub');
  assert.equal(new URL(config.dbUrl).password, 'p%2Fw%2Bd%3D');
  assert.deepEqual(config.auth.adminUsers, ['alice']);
  assert.equal(config.proxy.shouldStart, false);
  assert.equal(config.proxy.apiUrl, 'http://proxy:8001');
  assert.equal(config.proxy.authToken, env.CONFIGPROXY_AUTH_TOKEN);
  const docker = config.docker!;
  assert.equal(docker.image, 'personal-jupyter-singleuser:latest');
  assert.equal(docker.network_name, 'jupyterhub-net');
  assert.equal(docker.use_internal_ip, true);
  assert.equal(docker.remove, true);
  assert.deepEqual(docker.volumes, { 'jupyterhub-user-{username}': '/home/jovyan' });
  // Without its database password the module names the variable.
  const { POSTGRES_PASSWORD: _, ...rest } = env;
  const missing = spawnSync(
    process.execPath,
    ['--input-type=module', '-e', `await import(${JSON.stringify(join(composeDir, 'hub.config.mjs'))})`],
    {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, ...rest },
    },
  );
  assert.notEqual(missing.status, 0);
  assert.match(missing.stderr, /POSTGRES_PASSWORD is not set: copy example-stack.env to stack.env/);
});

const run = randomBytes(4).toString('hex');
const project = `stack${run}`;
const user = `alice${run}`;
const password = `pw-${randomBytes(12).toString('base64url')}`;
let engine: Dockerd;
let stackDir: string;
let ports: { proxy: number; api: number; hub: number; postgres: number };

type Service = Record<string, unknown> & { environment?: Record<string, string>; volumes?: string[] };

/**
 * compose.yaml for the test engine: every service on the host network at free ports (the
 * hostnames of jupyterhub-net become 127.0.0.1), the locally built images, the engine's socket,
 * volume names unique to this run. Everything else — each service's environment, read_only, users, the hub's
 * config module — is the stack's own.
 */
function hostNetworkVariant(): string {
  const stack = parseYaml(readFileSync(join(composeDir, 'compose.yaml'), 'utf8')) as {
    services: Record<string, Service>;
    volumes: Record<string, { name: string }>;
    networks?: unknown;
  };
  const { proxy, jupyterhub, postgres } = stack.services as Record<string, Service>;
  for (const service of Object.values(stack.services)) {
    delete service.networks;
    delete service.build;
    service.network_mode = 'host';
  }
  delete stack.services.singleuser;
  delete stack.networks;
  for (const volume of Object.values(stack.volumes)) volume.name = `${volume.name}_${run}`;
  Object.assign(proxy!, {
    image: imageTags.proxy,
    command: [
      '--ip=127.0.0.1',
      `--port=${ports.proxy}`,
      '--api-ip=127.0.0.1',
      `--api-port=${ports.api}`,
      `--default-target=http://127.0.0.1:${ports.hub}`,
      `--error-target=http://127.0.0.1:${ports.hub}/hub/error`,
    ],
  });
  const socketGroup = statSync(engine.socket).gid;
  Object.assign(jupyterhub!, {
    image: imageTags.hub,
    group_add: [String(socketGroup)],
    environment: {
      ...jupyterhub!.environment,
      DOCKER_NOTEBOOK_IMAGE: imageTags.singleuser,
      DOCKER_NETWORK_NAME: 'host',
      HUB_BIND_URL: `http://127.0.0.1:${ports.hub}`,
      HUB_CONNECT_URL: `http://127.0.0.1:${ports.hub}`,
      PUBLIC_URL: `http://127.0.0.1:${ports.proxy}`,
      PROXY_API_URL: `http://127.0.0.1:${ports.api}`,
      POSTGRES_HOST: `127.0.0.1:${ports.postgres}`,
    },
    volumes: (jupyterhub!.volumes ?? []).map((volume) =>
      volume.endsWith(':/var/run/docker.sock') ? `${engine.socket}:/var/run/docker.sock` : volume,
    ),
  });
  Object.assign(postgres!, {
    image: imageTags.postgres,
    environment: { ...postgres!.environment, PGPORT: String(ports.postgres) },
    healthcheck: undefined,
  });
  delete postgres!.healthcheck;
  return stringifyYaml(stack);
}

function stackCompose(args: string[]) {
  const result = spawnSync(
    'docker-compose',
    ['-f', 'compose.test.yaml', '--env-file', 'stack.env', ...args],
    {
      cwd: stackDir,
      encoding: 'utf8',
      env: { ...engine.env, COMPOSE_PROJECT_NAME: project },
      timeout: 180_000,
    },
  );
  if (result.status !== 0)
    throw new Error(`docker-compose ${args.join(' ')}: ${result.stderr}${result.stdout}`);
  return result.stdout;
}

async function setUp(): Promise<void> {
  engine = await startDockerd();
  await buildImages(engine, ['proxy', 'hub', 'singleuser', 'postgres']);
  ports = {
    proxy: await freePort(),
    api: await freePort(),
    hub: await freePort(),
    postgres: await freePort(),
  };
  const root = mkdtempSync(join(tmpdir(), 'compose-stack-'));
  stackDir = join(root, 'deploy/compose');
  cpSync(composeDir, stackDir, { recursive: true, filter: (src) => !src.endsWith('/stack.env') });
  writeFileSync(join(stackDir, 'compose.test.yaml'), hostNetworkVariant());
  writeFileSync(
    join(stackDir, 'stack.env'),
    [
      `CONFIGPROXY_AUTH_TOKEN=${randomBytes(32).toString('hex')}`,
      `JUPYTER_PASSWORD=${password}`,
      'JUPYTER_ADMIN_USER=admin',
      `POSTGRES_PASSWORD=${randomBytes(24).toString('base64')}`,
      'JUPYTER_DOMAIN=notebooks.test',
      'TZ=Europe/Berlin',
      'OPENAI_API_KEY=',
      'ANTHROPIC_API_KEY=',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
}

async function tearDown(): Promise<void> {
  if (stackDir) {
    try {
      stackCompose(['down', '-v', '--timeout', '5']);
    } catch {
      // reported by the test that failed
    }
    for (const name of [`jupyter-${user}`]) {
      try {
        engine.docker(['rm', '-f', name]);
      } catch {
        // not there
      }
    }
    try {
      engine.docker(['volume', 'rm', '-f', `jupyterhub-user-${user}`]);
    } catch {
      // not there
    }
    rmSync(join(stackDir, '../..'), { recursive: true, force: true });
  }
  await engine?.stop();
}

const hubUrl = () => `http://127.0.0.1:${ports.proxy}`;

async function stackUp(): Promise<void> {
  stackCompose(['up', '-d', '--no-build']);
  await waitFor(
    'the hub through the proxy',
    async () => (await fetch(`${hubUrl()}/hub/login`)).status === 200,
    { timeoutMs: 60_000, intervalMs: 200 },
  ).catch((error: Error) => {
    throw new Error(`${error.message}\n${stackCompose(['logs', '--no-color', '--tail', '40'])}`);
  });
}

/**
 * As a person would: signs in with the shared password, asks the token page for an API token,
 * and starts the server with it.
 */
async function signInAndSpawn(): Promise<string> {
  let cookie = await signIn(hubUrl(), user, password);
  const form = await fetch(`${hubUrl()}/hub/token`, { headers: { cookie } });
  assert.equal(form.status, 200);
  const fresh = form.headers
    .getSetCookie()
    .map((line) => line.split(';')[0]!)
    .find((pair) => pair.startsWith('_xsrf='));
  if (fresh) cookie = cookie.replace(/_xsrf=[^;]*/, fresh);
  const xsrf = /name="_xsrf" value="([^"]+)"/.exec(await form.text())?.[1];
  assert.ok(xsrf, 'the token page has an _xsrf field');
  const made = await fetch(`${hubUrl()}/hub/token`, {
    method: 'POST',
    headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ _xsrf: xsrf, note: 'compose test', expires_in: '3600' }),
  });
  const page = await made.text();
  assert.equal(made.status, 201, page);
  const token = /id="new-token">([^<]+)</.exec(page)?.[1];
  assert.ok(token, 'the token page shows the new token');
  const start = await fetch(`${hubUrl()}/hub/api/users/${user}/server`, {
    method: 'POST',
    headers: { authorization: `token ${token}` },
  });
  assert.ok([201, 202].includes(start.status), `spawn: ${start.status} ${await start.text()}`);
  await waitFor(
    `${user}'s server through the proxy`,
    async () =>
      (await fetch(`${hubUrl()}/user/${user}/api/status`, { headers: { authorization: `token ${token}` } }))
        .status === 200,
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  return token;
}

test('the stack comes up on PostgreSQL; a user signs in, spawns, writes a file; a killed hub re-attaches to the server; after a restart of the stack the file is in their volume', async (t) => {
  t.after(tearDown);
  await setUp();
  await stackUp();
  let token = await signInAndSpawn();
  const content = `written by ${user} before the restart\n`;
  const put = await fetch(`${hubUrl()}/user/${user}/api/contents/notes.txt`, {
    method: 'PUT',
    headers: { authorization: `token ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'file', format: 'text', content }),
  });
  assert.ok([200, 201].includes(put.status), `PUT: ${put.status} ${await put.text()}`);
  const container = JSON.parse(engine.docker(['inspect', `jupyter-${user}`]))[0] as {
    Mounts: Array<{ Name?: string; Destination: string }>;
  };
  assert.ok(
    container.Mounts.some((m) => m.Name === `jupyterhub-user-${user}` && m.Destination === '/home/jovyan'),
  );
  // The hub alone restarts (killed, as by an OOM): it re-attaches to the running container.
  stackCompose(['kill', 'jupyterhub']);
  stackCompose(['up', '-d', '--no-build', 'jupyterhub']);
  const model = await waitFor(
    'the restarted hub to list the running server',
    async () => {
      const res = await fetch(`${hubUrl()}/hub/api/users/${user}`, {
        headers: { authorization: `token ${token}` },
      });
      if (res.status !== 200) return undefined;
      const body = (await res.json()) as { servers?: Record<string, { ready: boolean }> };
      return body.servers?.['']?.ready ? body : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  assert.ok(model);
  const again = await fetch(`${hubUrl()}/user/${user}/api/contents/notes.txt`, {
    headers: { authorization: `token ${token}` },
  });
  assert.equal(again.status, 200);
  // Stop the server (the container goes: remove is on), then the whole stack; volumes stay.
  const stop = await fetch(`${hubUrl()}/hub/api/users/${user}/server`, {
    method: 'DELETE',
    headers: { authorization: `token ${token}` },
  });
  assert.ok([202, 204].includes(stop.status), `stop: ${stop.status}`);
  await waitFor(
    'the container to be removed',
    () => {
      try {
        engine.docker(['inspect', `jupyter-${user}`]);
        return false;
      } catch {
        return true;
      }
    },
    { timeoutMs: 30_000, intervalMs: 200 },
  );
  stackCompose(['down', '--timeout', '10']);
  await stackUp();
  // The hub's state is in PostgreSQL's volume: the token made before the restart still works.
  const who = await fetch(`${hubUrl()}/hub/api/user`, { headers: { authorization: `token ${token}` } });
  assert.equal(who.status, 200);
  assert.equal(((await who.json()) as { name: string }).name, user);
  token = await signInAndSpawn();
  const read = await fetch(`${hubUrl()}/user/${user}/api/contents/notes.txt`, {
    headers: { authorization: `token ${token}` },
  });
  assert.equal(read.status, 200);
  assert.equal(((await read.json()) as { content: string }).content, content);
});
