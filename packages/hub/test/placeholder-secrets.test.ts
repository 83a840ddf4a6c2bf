// The hub refuses to start with a placeholder secret copied from deploy/compose/example-stack.env.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildConfig } from '../src/config.ts';
import { placeholderSecrets, refusePlaceholderSecrets } from '../src/placeholder-secrets.ts';

const cli = new URL('../src/cli.ts', import.meta.url).pathname;
const exampleFile = new URL('../../../deploy/compose/example-stack.env', import.meta.url).pathname;

function exampleEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of readFileSync(exampleFile, 'utf8').split('\n')) {
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (match?.[1] !== undefined) env[match[1]] = match[2] ?? '';
  }
  return env;
}

test('example-stack.env names the eight variables of seed 002; its secrets are the placeholders the hub knows', () => {
  const env = exampleEnv();
  assert.deepEqual(Object.keys(env).sort(), [
    'ANTHROPIC_API_KEY',
    'CONFIGPROXY_AUTH_TOKEN',
    'JUPYTER_ADMIN_USER',
    'JUPYTER_DOMAIN',
    'JUPYTER_PASSWORD',
    'OPENAI_API_KEY',
    'POSTGRES_PASSWORD',
    'TZ',
  ]);
  for (const [name, placeholder] of Object.entries(placeholderSecrets))
    assert.equal(env[name], placeholder, name);
  assert.equal(env.OPENAI_API_KEY, '');
  assert.equal(env.ANTHROPIC_API_KEY, '');
});

test('each placeholder secret is refused with an error naming its variable; real secrets pass', () => {
  const real = {
    CONFIGPROXY_AUTH_TOKEN: 'a'.repeat(64),
    JUPYTER_PASSWORD: 'pw-1',
    POSTGRES_PASSWORD: 'pg-1',
  };
  const dbUrl = (password: string) =>
    `postgresql://jupyterhub:${encodeURIComponent(password)}@postgres/jupyterhub`;
  const configFor = (env: Record<string, string>) =>
    buildConfig({ 'JupyterHub.db_url': dbUrl(env.POSTGRES_PASSWORD ?? '') }, env);
  assert.doesNotThrow(() => refusePlaceholderSecrets(configFor(real), real));
  for (const [name, placeholder] of Object.entries(placeholderSecrets)) {
    const env = { ...real, [name]: placeholder };
    assert.throws(
      () => refusePlaceholderSecrets(configFor(env), env),
      (error: Error & { code?: string }) =>
        error.code === 'HUB_CONFIG' && error.message.startsWith(`${name} still has the placeholder value`),
    );
  }
  // The database password counts even when it reaches the hub only inside db_url.
  const inUrlOnly = buildConfig(
    { 'JupyterHub.db_url': dbUrl(placeholderSecrets.POSTGRES_PASSWORD ?? '') },
    real,
  );
  assert.throws(() => refusePlaceholderSecrets(inUrlOnly, real), {
    message: /^POSTGRES_PASSWORD still has the placeholder value/,
  });
});

test('seahorse-hub started with example-stack.env exits 1 naming every placeholder secret', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-placeholder-'));
  try {
    const result = spawnSync(
      process.execPath,
      ['--conditions=seahorse-source', cli, '--db', 'sqlite:///hub.sqlite'],
      {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, ...exampleEnv() },
        timeout: 60_000,
      },
    );
    assert.equal(result.status, 1, result.stderr);
    assert.match(
      result.stderr,
      /^seahorse-hub: CONFIGPROXY_AUTH_TOKEN, JUPYTER_PASSWORD, POSTGRES_PASSWORD still have the placeholder value/,
    );
    assert.doesNotMatch(result.stdout, /listening/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a placeholder in quotes or with blanks around it, as docker-compose 1.29 passes it from an env file, is refused too', () => {
  const real = {
    CONFIGPROXY_AUTH_TOKEN: 'b'.repeat(64),
    JUPYTER_PASSWORD: 'pw-2',
    POSTGRES_PASSWORD: 'pg-2',
  };
  for (const written of [
    '"replace-with-a-strong-password"',
    "'replace-with-a-strong-password' ",
    ' replace-with-a-strong-password\t',
  ]) {
    const env = { ...real, JUPYTER_PASSWORD: written };
    assert.throws(() => refusePlaceholderSecrets(buildConfig({}, env), env), {
      message: /^JUPYTER_PASSWORD still has/,
    });
  }
  // A real password that merely contains the placeholder text is the user's business.
  const env = { ...real, JUPYTER_PASSWORD: 'replace-with-a-strong-password-NOT' };
  assert.doesNotThrow(() => refusePlaceholderSecrets(buildConfig({}, env), env));
});
