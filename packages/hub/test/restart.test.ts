// State lives in the database: a hub that goes away without stopping servers (as after a kill)
// and a new hub on the same database re-attach to them; with cleanup_servers true, stopping
// the hub stops them.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startTestHub } from './helpers.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

test('a restarted hub lists the server still running and the proxy still reaches it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-restart-'));
  const traits = { 'JupyterHub.cleanup_servers': false, 'JupyterHub.cleanup_proxy': false };
  const first = await startTestHub(traits, { dir });
  let second: Awaited<ReturnType<typeof startTestHub>> | undefined;
  let pid = 0;
  try {
    await first.api('/users/alice', { method: 'POST' });
    await first.api('/users/alice/server', { method: 'POST' });
    await waitFor(
      'ready',
      async () =>
        ((await (await first.api('/users/alice')).json()) as { server: unknown }).server === '/user/alice/',
    );
    pid = (
      (await (await first.api('/users/alice')).json()) as {
        servers: Record<string, { state: { pid: number } }>;
      }
    ).servers['']!.state.pid;
    await first.stop('simulated crash');
    // The same ports, the same database: a new process after the old one died.
    second = await startTestHub(
      {
        ...traits,
        'JupyterHub.bind_url': first.config.bindUrl.href,
        'ConfigurableHTTPProxy.api_url': first.config.proxy.apiUrl,
      },
      { dir },
    );
    const model = (await (await second.api('/users/alice')).json()) as Json;
    assert.equal(model.server, '/user/alice/');
    assert.equal(model.servers[''].ready, true);
    assert.equal(model.servers[''].state.pid, pid);
    const response = await fetch(`${second.proxyUrl}/user/alice/api/status`);
    assert.equal(response.status, 200);
    assert.equal(second.logs.has('re-attached to running server'), true);
    assert.equal((await second.api('/users/alice/server', { method: 'DELETE' })).status, 204);
  } finally {
    await second?.close();
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already stopped
      }
    }
    // The first hub's proxy was left running on purpose; the second one adopted and kept it.
    await first.proxyProcess?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with cleanup_servers true, stopping the hub stops the servers', async () => {
  const hub = await startTestHub({ 'JupyterHub.cleanup_servers': true });
  await hub.api('/users/bob', { method: 'POST' });
  await hub.api('/users/bob/server', { method: 'POST' });
  await waitFor(
    'ready',
    async () => ((await (await hub.api('/users/bob')).json()) as { server: unknown }).server === '/user/bob/',
  );
  const model = (await (await hub.api('/users/bob')).json()) as Json;
  const pid = model.servers[''].state.pid as number;
  await hub.close();
  assert.throws(() => process.kill(pid, 0), /ESRCH/);
});
