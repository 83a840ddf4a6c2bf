// deploy/compose (seed 002's stack) as Debian's docker-compose 1.29 reads it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parse as parseYaml } from 'yaml';

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
  // The secrets reach the services from stack.env only.
  assert.equal(jupyterhub?.environment?.POSTGRES_PASSWORD, 'pg/with+odd=chars');
  const file = readFileSync(join(composeDir, 'compose.yaml'), 'utf8');
  for (const secret of ['CONFIGPROXY_AUTH_TOKEN', 'JUPYTER_PASSWORD', 'POSTGRES_PASSWORD', 'API_KEY']) {
    assert.doesNotMatch(file, new RegExp(secret), `compose.yaml names ${secret}`);
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
