// `npm start`'s script (scripts/start.mjs): the personal hub on embedded defaults, as a new user
// meets it — the password printed once and kept mode 600, the login form, a notebook server
// spawned from Debian's jupyterhub-singleuser and reached through the proxy, then the hub
// stopped with Ctrl-C and started again: same password, same session, the server picked up.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, ManagedProcess, waitFor } from '@seahorse/runtime/testing';
import { signIn } from './helpers.ts';

const script = fileURLToPath(new URL('../../../scripts/start.mjs', import.meta.url));

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port whose neighbours the script also takes are free: +1 the proxy's API, +81 the hub. */
async function startPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 81 < 65536 && (await canBind(port + 1)) && (await canBind(port + 81))) return port;
  }
}

test('npm start: the password printed once and kept mode 600, sign-in, a server through the proxy; restarted, the same password and session and the server picked up', async () => {
  const port = await startPort();
  const state = mkdtempSync(join(tmpdir(), 'seahorse-npm-start-'));
  const env: NodeJS.ProcessEnv = { ...process.env, SEAHORSE_PORT: String(port), SEAHORSE_STATE: state };
  delete env.JUPYTER_PASSWORD;
  const hub = `http://127.0.0.1:${port}`;
  const start = () => new ManagedProcess('npm start', process.execPath, [script], { env });
  const ready = (run: ManagedProcess) =>
    run.untilReady(
      waitFor('the banner', () => run.output.includes('Seahorse hub is running'), { timeoutMs: 60_000 }),
    );
  let cookie = '';
  // A cookie counts on the API only with a Referer from the hub's own pages (JupyterHub 3.0).
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${hub}/hub/api${path}`, {
      ...init,
      headers: { cookie, referer: `${hub}/hub/home`, 'content-type': 'application/json' },
    });
  const server = async () => {
    const res = await api('/users/admin');
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { servers: Record<string, { ready: boolean }> }).servers[''];
  };
  // What answers /user/admin/ through the proxy: the notebook server (Tornado) once it runs.
  const answeredByNotebook = async () =>
    (
      (await fetch(`${hub}/user/admin/api/status`, { redirect: 'manual' })).headers.get('server') ?? ''
    ).includes('Tornado');

  let run = start();
  try {
    await ready(run);
    const password = /Password:\s+(\S+)/.exec(run.output)?.[1];
    assert.ok(password, run.output);
    assert.match(run.output, /User:\s+admin/);
    assert.match(run.output, new RegExp(`Open:\\s+http://localhost:${port}/`));
    assert.equal(readFileSync(join(state, 'hub-password'), 'utf8').trim(), password);
    assert.equal(statSync(join(state, 'hub-password')).mode & 0o777, 0o600);
    assert.equal(statSync(state).mode & 0o777, 0o700);
    await assert.rejects(signIn(hub, 'admin', `${password}x`), /sign-in failed: 403/);
    cookie = await signIn(hub, 'admin', password);

    const spawned = await api('/users/admin/server', { method: 'POST', body: '{}' });
    assert.ok([201, 202].includes(spawned.status), await spawned.text());
    await waitFor('the server ready', async () => (await server())?.ready === true, { timeoutMs: 60_000 });
    await waitFor('the server through the proxy', answeredByNotebook, { timeoutMs: 10_000 });

    run.signal('SIGINT');
    assert.equal(await run.exited, 0, run.output);

    run = start();
    await ready(run);
    assert.doesNotMatch(run.output, new RegExp(password), 'the password is shown only once');
    assert.match(run.output, /Password:\s+in .*hub-password/);
    assert.equal((await server())?.ready, true, 'the session and the server outlived the restart');
    await waitFor('the server through the proxy again', answeredByNotebook, { timeoutMs: 10_000 });

    const stopped = await api('/users/admin/server', { method: 'DELETE' });
    assert.ok([202, 204].includes(stopped.status), await stopped.text());
    await waitFor('the server stopped', async () => (await server()) === undefined, { timeoutMs: 30_000 });
    run.signal('SIGINT');
    assert.equal(await run.exited, 0, run.output);
  } finally {
    if (run.alive && cookie) await api('/users/admin/server', { method: 'DELETE' }).catch(() => {});
    await run.stop('SIGINT', 15_000);
    rmSync(state, { recursive: true, force: true });
  }
});
