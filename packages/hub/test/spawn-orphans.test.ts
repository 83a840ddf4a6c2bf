// A hub SIGKILLed in the instant after it created a user's server — the process spawned, the
// pod created — and before it could record anything more: the hub started again on the same
// database finds that server from the state saved before the create, and stops it.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { test } from 'node:test';
import { type ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { processAlive } from '../src/spawners/processes.ts';
import { FakeApiServer } from './fake-apiserver.ts';
import { startHubBin, writeHubYaml } from './hub-bin.ts';

// biome-ignore lint/suspicious/noExplicitAny: the tests read JSON of many shapes
type Json = Record<string, any>;

const token = 'orphan-test-admin-token-0123456789';

async function untilUp(proc: ManagedProcess, api: (path: string) => Promise<Response>): Promise<void> {
  await proc.untilReady(waitFor('hub', async () => (await api('/')).ok, { timeoutMs: 60_000 }));
}

function stopProxy(dir: string): void {
  try {
    process.kill(Number(readFileSync(join(dir, 'jupyterhub-proxy.pid'), 'utf8')), 'SIGKILL');
  } catch {
    // stopped with the hub
  }
}

test('a hub killed right after it spawned a local server, before recording its PID: the restarted hub finds the process by its output file and stops it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-orphan-'));
  // The server kills its hub the moment it runs: the hub never learns its PID.
  const script = join(dir, 'server.sh');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      `echo $$ > ${dir}/server.pid`,
      `if [ ! -e ${dir}/killed ]; then touch ${dir}/killed; kill -9 $PPID; fi`,
      'exec sleep 300',
      '',
    ].join('\n'),
  );
  chmodSync(script, 0o755);
  const { api } = await writeHubYaml(dir, token, [
    'Spawner:',
    `  cmd: [${script}]`,
    `  notebook_dir: ${dir}`,
  ]);
  let proc = startHubBin(dir);
  let serverPid = 0;
  try {
    await untilUp(proc, api);
    await api('/users/alice', { method: 'POST' });
    await api('/users/alice/server', { method: 'POST' }).catch(() => undefined);
    await proc.exited;
    serverPid = Number(readFileSync(join(dir, 'server.pid'), 'utf8'));
    assert.ok(processAlive(serverPid), 'the server outlived its hub');
    proc = startHubBin(dir);
    await untilUp(proc, api);
    await waitFor('the orphaned server stopped', () => !processAlive(serverPid), { timeoutMs: 30_000 });
    const model = (await (await api('/users/alice')).json()) as Json;
    assert.equal(model.server, null);
    assert.equal(model.pending, null);
  } finally {
    await proc.stop();
    if (serverPid && processAlive(serverPid)) process.kill(-serverPid, 'SIGKILL');
    stopProxy(dir);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a hub killed the moment its pod create reached the apiserver: the restarted hub deletes that pod', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hub-orphan-'));
  const apiToken = 'kubeconfig-user-token-0123456789';
  let proc: ManagedProcess | undefined;
  let killed = false;
  let stateAtCreate = '';
  const fake = new FakeApiServer({
    token: apiToken,
    onPodCreated: () => {
      // The create is done; the hub dies before it reads the answer.
      if (killed || !proc) return;
      killed = true;
      proc.signal('SIGKILL');
      // What the database held when the create arrived: the hub was waiting for this answer.
      const db = new DatabaseSync(join(dir, 'hub.sqlite'), { readOnly: true });
      try {
        stateAtCreate = (db.prepare("SELECT state FROM spawners WHERE name = ''").get() as { state: string })
          .state;
      } finally {
        db.close();
      }
    },
  });
  const server = await fake.listen();
  writeFileSync(
    join(dir, 'kubeconfig'),
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server } }],
      users: [{ name: 'hub', user: { token: apiToken } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'hub', namespace: 'jupyterhub' } }],
      'current-context': 'fake',
    }),
  );
  const { api } = await writeHubYaml(dir, token, [
    'KubeSpawner:',
    '  namespace: jupyterhub',
    '  events_enabled: false',
  ]);
  const yaml = readFileSync(join(dir, 'hub.yaml'), 'utf8').replace(
    'JupyterHub:\n',
    'JupyterHub:\n  spawner_class: KubeSpawner\n',
  );
  writeFileSync(join(dir, 'hub.yaml'), yaml);
  const env = { KUBECONFIG: join(dir, 'kubeconfig') };
  proc = startHubBin(dir, env);
  try {
    await untilUp(proc, api);
    await api('/users/bob', { method: 'POST' });
    await api('/users/bob/server', { method: 'POST' }).catch(() => undefined);
    await proc.exited;
    assert.ok(killed);
    assert.equal(
      JSON.parse(stateAtCreate).pod_name,
      'jupyter-bob',
      'the pod named in the database before its create',
    );
    assert.ok(fake.get('pods', 'jupyterhub', 'jupyter-bob'), 'the pod outlived its hub');
    proc = startHubBin(dir, env);
    await untilUp(proc, api);
    await waitFor('the orphaned pod deleted', () => !fake.get('pods', 'jupyterhub', 'jupyter-bob'), {
      timeoutMs: 30_000,
    });
    const model = (await (await api('/users/bob')).json()) as Json;
    assert.equal(model.server, null);
    assert.equal(model.pending, null);
    assert.ok(existsSync(join(dir, 'hub.sqlite')));
  } finally {
    await proc.stop();
    stopProxy(dir);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
