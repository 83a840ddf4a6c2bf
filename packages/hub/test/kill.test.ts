// The bin as users run it: killed (SIGKILL) in the middle of a run and started again, the
// server it spawned (Debian's jupyterhub-singleuser) is still listed and reachable.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { waitFor } from '@seahorse/runtime/testing';
import { startHubBin, writeHubYaml } from './hub-bin.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const token = 'kill-test-admin-token-0123456789';

test('seahorse-hub killed mid-run and started again still lists and reaches the running server', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-kill-'));
  const { api, hub, proxyPort } = await writeHubYaml(dir, token, [
    'Spawner:',
    '  args: [--allow-root]',
    `  notebook_dir: ${dir}`,
  ]);
  let proc = startHubBin(dir);
  let serverPid = 0;
  try {
    await proc.untilReady(waitFor('hub', async () => (await fetch(`${hub}/`)).ok, { timeoutMs: 60_000 }));
    await api('/users/alice', { method: 'POST' });
    const user = (await (await api('/users/alice/tokens', { method: 'POST' })).json()) as Json;
    await api('/users/alice/server', { method: 'POST' });
    const spawned = await waitFor(
      'the spawn to finish',
      async () => {
        const model = (await (await api('/users/alice')).json()) as Json;
        return model.pending === null ? model : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    assert.equal(spawned.server, '/user/alice/', proc.output);
    serverPid = ((await (await api('/users/alice')).json()) as Json).servers[''].state.pid;
    proc.signal('SIGKILL');
    await proc.exited;
    proc = startHubBin(dir);
    await proc.untilReady(
      waitFor('hub again', async () => (await fetch(`${hub}/`)).ok, { timeoutMs: 60_000 }),
    );
    const model = (await (await api('/users/alice')).json()) as Json;
    assert.equal(model.server, '/user/alice/');
    assert.equal(model.servers[''].state.pid, serverPid);
    const status = await waitFor(
      'the server through the proxy',
      async () => {
        const response = await fetch(`http://127.0.0.1:${proxyPort}/user/alice/api/status`, {
          headers: { authorization: `token ${user.token}` },
        });
        return response.status === 200 ? response : undefined;
      },
      { timeoutMs: 30_000 },
    );
    assert.equal(status.status, 200);
  } finally {
    await proc.stop();
    if (serverPid) {
      try {
        process.kill(-serverPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    try {
      process.kill(Number(readFileSync(join(dir, 'jupyterhub-proxy.pid'), 'utf8')), 'SIGKILL');
    } catch {
      // stopped with the hub
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
