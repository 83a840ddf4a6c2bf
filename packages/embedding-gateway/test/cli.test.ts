// The bin as a person runs it: from the sources, with the original's environment variables.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { startFakeOpenAI } from './fake-openai.ts';
import { auth, call, embed } from './helpers.ts';

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url));

function environment(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  return { ...env, ...extra };
}

it('starts with no S3 configured on the filesystem store, serves, and exits 0 on SIGTERM', async () => {
  const upstream = await startFakeOpenAI();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'embedding-gateway-cli-'));
  const gateway = new ManagedProcess(
    'seahorse-embedding-gateway',
    process.execPath,
    ['--conditions=seahorse-source', cli],
    {
      env: environment({
        HOST: '127.0.0.1',
        PORT: String(port),
        OPENAI_BASE_URL: upstream.baseUrl,
        CACHE_DIR: dir,
        LOG_LEVEL: 'warning',
        TERMINATION_GRACE_PERIOD_SECONDS: '5',
      }),
    },
  );
  try {
    const url = `http://127.0.0.1:${port}`;
    await gateway.untilReady(
      waitFor(
        'the gateway to answer /healthz',
        () => call(url, { method: 'GET', path: '/healthz' }).then((a) => a.status === 200),
        {
          timeoutMs: 30_000,
        },
      ),
    );
    const answer = await embed(
      url,
      { model: 'text-embedding-3-small', input: 'from the cli', dimensions: 2 },
      auth,
    );
    assert.equal(answer.status, 200, answer.text);
    assert.ok(existsSync(dir));
    gateway.signal('SIGTERM');
    assert.equal(await gateway.exited, 0, gateway.output);
  } finally {
    await gateway.stop('SIGKILL');
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

it('a malformed setting ends with one line naming it and exit status 2', () => {
  const result = spawnSync(process.execPath, ['--conditions=seahorse-source', cli], {
    env: environment({ PORT: 'eighty' }),
    encoding: 'utf8',
  });
  assert.equal(result.status, 2);
  assert.match(result.stderr, /PORT expects an integer/);
});

it('--help lists the flags with their environment variables', () => {
  const result = spawnSync(process.execPath, ['--conditions=seahorse-source', cli, '--help'], {
    encoding: 'utf8',
  });
  assert.equal(result.status, 0);
  for (const name of [
    'OPENAI_BASE_URL',
    'S3_ENDPOINT_URL',
    'S3_BUCKET',
    'IDLE_TIMEOUT',
    'TERMINATION_GRACE_PERIOD_SECONDS',
  ]) {
    assert.match(result.stdout, new RegExp(name));
  }
});
