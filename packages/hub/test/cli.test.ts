// The bin's commands: --generate-config, upgrade-db, and configuration mistakes as one line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { migrations } from '../src/db/migrations.ts';

const cli = new URL('../src/cli.ts', import.meta.url).pathname;

function run(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, ['--conditions=seahorse-source', cli, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 60_000,
  });
}

test('--generate-config prints every trait commented; --config-file writes it once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-cli-'));
  try {
    const printed = run(['--generate-config'], dir);
    assert.equal(printed.status, 0);
    assert.match(printed.stdout, /^JupyterHub:$/m);
    assert.match(printed.stdout, /# allow_named_servers: false/);
    const written = run(['--generate-config', '--config-file', 'hub.yaml'], dir);
    assert.equal(written.status, 0);
    const again = run(['--generate-config', '--config-file', 'hub.yaml'], dir);
    assert.equal(again.status, 2);
    assert.match(again.stderr, /hub.yaml exists/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a config with an unknown key ends in one line naming it, exit status 1', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-cli-'));
  try {
    writeFileSync(join(dir, 'hub.yaml'), 'JupyterHub:\n  bind_ur: http://:8000\n');
    const result = run(['--config', 'hub.yaml'], dir);
    assert.equal(result.status, 1);
    assert.equal(
      result.stderr.trim(),
      "seahorse-hub: hub.yaml: unknown key 'JupyterHub.bind_ur'; did you mean 'JupyterHub.bind_url'?",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('upgrade-db migrates the database and exits; a second run has nothing to do', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-cli-'));
  try {
    const first = run(['upgrade-db', '--db', 'sqlite:///hub.sqlite'], dir);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /"msg":"database upgraded"/);
    const db = new DatabaseSync(join(dir, 'hub.sqlite'));
    const versions = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all();
    db.close();
    assert.deepEqual(
      versions.map((v) => v.version),
      migrations.map((m) => m.version),
    );
    const second = run(['upgrade-db', '--db', 'sqlite:///hub.sqlite'], dir);
    assert.match(second.stdout, /"msg":"database already current"/);
    const unknown = run(['upgrade-everything'], dir);
    assert.equal(unknown.status, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
