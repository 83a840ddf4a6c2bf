// Hostile input against a real hub on loopback (our proxy, real server processes, a real
// PostgreSQL where it matters): each test is a defect found by attacking the hub, kept so it
// stays fixed.
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { ManagedProcess, type PostgresServer, startPostgres, waitFor } from '@seahorse/runtime/testing';
import { startTestHub, type TestHub } from './helpers.ts';

describe('header authenticator behind the hub’s own proxy', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({
      'JupyterHub.authenticator_class': 'header',
      'Authenticator.allow_all': true,
      'Authenticator.admin_users': ['boss'],
    });
  });
  after(() => hub?.close());

  const login = (base: string, headers: Record<string, string>, query = '') =>
    fetch(`${base}/hub/login${query}`, { headers, redirect: 'manual' });

  /** A request from 127.0.0.2: a client that is not in trusted_sources (127.0.0.1, ::1). */
  const fromElsewhere = (base: string, headers: Record<string, string>) =>
    new Promise<{ status: number; cookie: string | undefined }>((resolve, reject) => {
      request(`${base}/hub/login`, { headers, localAddress: '127.0.0.2' }, (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0] });
      })
        .on('error', reject)
        .end();
    });

  test('the user header sent by anyone to the public proxy port is refused', async () => {
    // The proxy is on loopback, so the hub sees every request come from a trusted address;
    // the address that reached the proxy is the last X-Forwarded-For entry.
    let response = await fromElsewhere(hub.proxyUrl, { 'x-auth-request-user': 'boss' });
    assert.equal(response.status, 403);
    // No login session (the pages' own `_xsrf` cookie is not one).
    assert.ok(!response.cookie || response.cookie.startsWith('_xsrf='), `cookie set: ${response.cookie}`);
    response = await fromElsewhere(hub.proxyUrl, {
      'x-auth-request-user': 'boss',
      'x-forwarded-for': '127.0.0.1',
    });
    assert.equal(response.status, 403);
    // The same client straight to the hub is refused as before.
    assert.equal((await fromElsewhere(hub.url, { 'x-auth-request-user': 'boss' })).status, 403);
  });

  test('a trusted relay reporting an untrusted client is refused; a trusted one is accepted', async () => {
    let response = await login(hub.url, { 'x-auth-request-user': 'boss', 'x-forwarded-for': '203.0.113.9' });
    assert.equal(response.status, 403);
    response = await login(hub.url, {
      'x-auth-request-user': 'boss',
      'x-forwarded-for': '203.0.113.9, 127.0.0.1',
    });
    assert.equal(response.status, 302);
    response = await login(hub.url, { 'x-auth-request-user': 'boss' });
    assert.equal(response.status, 302);
  });

  test('next= with control characters is not followed (browsers drop tabs: /\\t/evil is //evil)', async () => {
    for (const next of ['/%09/evil.example', '/%0a/evil.example', '/%0d%0aSet-Cookie:%20x=1', '/%00x']) {
      const response = await login(hub.url, { 'x-auth-request-user': 'alice' }, `?next=${next}`);
      assert.equal(response.status, 302, next);
      assert.equal(response.headers.get('location'), '/hub/home', next);
    }
  });
});

describe('REST API abuse on SQLite', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub({
      'JupyterHub.allow_named_servers': true,
      'JupyterHub.slow_spawn_timeout': 0.2,
    });
    const response = await hub.api('/users', {
      method: 'POST',
      body: JSON.stringify({ usernames: ['alice', 'bob', 'carol'] }),
    });
    assert.equal(response.status, 201);
  });
  after(() => hub?.close());

  const tokenFor = async (user: string, body: unknown, token?: string) => {
    const response = await hub.api(`/users/${user}/tokens`, {
      method: 'POST',
      body: JSON.stringify(body),
      ...(token ? { token } : {}),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  test('a token limited to `tokens` cannot mint a token with all of its owner’s scopes', async () => {
    const limited = await tokenFor('alice', { scopes: ['tokens!user=alice'] });
    assert.equal(limited.status, 201);
    const secret = limited.body.token as string;
    // Asking for servers is refused, and so is asking for nothing (the default, `inherit`).
    assert.equal((await tokenFor('alice', { scopes: ['servers'] }, secret)).status, 403);
    const minted = await tokenFor('alice', {}, secret);
    assert.equal(minted.status, 403);
    assert.match(minted.body.message as string, /^Not assigning requested scopes .*servers!user=alice/);
    // What the limited token holds it may pass on.
    assert.equal((await tokenFor('alice', { scopes: ['read:tokens!user=alice'] }, secret)).status, 201);
    // A full token of the owner, and the admin, still mint inheriting tokens.
    const full = await tokenFor('alice', {});
    assert.equal(full.status, 201);
    assert.equal((await tokenFor('alice', {}, full.body.token as string)).status, 201);
  });
  test('deleting a user while their server is starting is refused (it left an orphan process)', async () => {
    let response = await hub.api('/users/carol/server', {
      method: 'POST',
      body: JSON.stringify({ delay_ms: 800 }),
    });
    assert.equal(response.status, 202);
    response = await hub.api('/users/carol', { method: 'DELETE' });
    assert.equal(response.status, 400);
    assert.match(((await response.json()) as { message: string }).message, /in the process of starting/);
    const url = await waitFor('carol’s server to be ready', async () => {
      const user = (await (await hub.api('/users/carol')).json()) as {
        servers: Record<string, { ready: boolean }>;
      };
      return user.servers['']?.ready
        ? (
            await hub.db.get<{ url: string }>(
              "SELECT s.url FROM spawners s JOIN users u ON u.id = s.user_id WHERE u.name = 'carol'",
            )
          )?.url
        : undefined;
    });
    assert.equal((await hub.api('/users/carol', { method: 'DELETE' })).status, 204);
    // The server process is gone with its user.
    await waitFor('carol’s server to stop answering', () =>
      fetch(url!).then(
        () => false,
        () => true,
      ),
    );
  });
  test('a repeated stop while a (SIGSTOPped) server is stopping is 202, not 204; SIGKILL ends it', async () => {
    // 201, or 202 when the loaded machine takes longer than slow_spawn_timeout (0.2 s) to start it.
    assert.ok([201, 202].includes((await hub.api('/users/bob/server', { method: 'POST' })).status));
    const user = await waitFor('bob’s server to be ready', async () => {
      const model = (await (await hub.api('/users/bob')).json()) as {
        servers: Record<string, { ready: boolean; state: { pid: number } }>;
      };
      return model.servers['']?.ready ? model : undefined;
    });
    const pid = user.servers['']!.state.pid;
    process.kill(pid, 'SIGSTOP');
    const first = await hub.api('/users/bob/server', { method: 'DELETE' });
    assert.equal(first.status, 202);
    const again = await Promise.all([1, 2].map(() => hub.api('/users/bob/server', { method: 'DELETE' })));
    assert.deepEqual(
      again.map((r) => r.status),
      [202, 202],
    );
    await waitFor(
      'the paused server to be killed',
      () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      },
      { timeoutMs: 15_000 },
    );
    await waitFor('bob’s server to be stopped', async () => {
      const model = (await (await hub.api('/users/bob')).json()) as { servers: Record<string, unknown> };
      return Object.keys(model.servers).length === 0;
    });
  });
});

describe('PostgreSQL killed mid-run and restarted', () => {
  let hub: TestHub;
  let pg: PostgresServer;
  before(async () => {
    pg = await startPostgres();
    hub = await startTestHub({ 'JupyterHub.db_url': pg.url });
    assert.equal((await hub.api('/users/alice', { method: 'POST' })).status, 201);
  });
  after(async () => {
    await pg?.stop();
  });

  test('while the database is down the API answers 503 saying so; afterwards it recovers', async () => {
    // SIGQUIT is PostgreSQL's immediate shutdown: what a crash looks like to its clients.
    // The test cluster runs with synchronous_commit off: flush what is committed first.
    await hub.db.exec('CHECKPOINT');
    const { spawnfile, spawnargs } = pg.process.child;
    pg.process.signal('SIGQUIT');
    await pg.process.exited;
    for (const [method, path] of [
      ['GET', '/users/alice'],
      ['GET', '/users'],
      ['POST', '/users/alice/server'],
      ['POST', '/users'],
    ] as const) {
      const response = await hub.api(path, {
        method,
        ...(method === 'POST' ? { body: JSON.stringify({ usernames: ['x'] }) } : {}),
      });
      assert.equal(response.status, 503, `${method} ${path}`);
      assert.equal(response.headers.get('retry-after'), '5');
      assert.match(((await response.json()) as { message: string }).message, /database is unavailable/);
    }
    // The same cluster comes back on the same port, as its owner (PostgreSQL refuses root).
    const data = spawnargs[spawnargs.indexOf('-D') + 1]!;
    const { uid, gid } = statSync(data);
    const restarted = new ManagedProcess(
      'postgres again',
      spawnfile,
      spawnargs.slice(1),
      process.getuid?.() === 0 ? { uid, gid } : {},
    );
    try {
      let last = '';
      await waitFor(
        'the API to answer again',
        async () => {
          const response = await hub.api('/users/alice');
          last = `${response.status} ${await response.text()}`;
          return response.status === 200;
        },
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      ).catch((error: Error) => {
        throw new Error(`${error.message}: ${last}\n${restarted.output.slice(-300)}`);
      });
      assert.equal((await hub.api('/users/bob', { method: 'POST' })).status, 201);
    } finally {
      await restarted.stop('SIGINT');
    }
    // Stopping the hub while the database is down still stops the proxy it started.
    await hub.close();
    assert.equal(hub.proxyProcess?.running, false);
  });
});

describe('hostile bytes into the API’s parsers', () => {
  let hub: TestHub;
  before(async () => {
    hub = await startTestHub();
    assert.equal((await hub.api('/users/alice', { method: 'POST' })).status, 201);
  });
  after(() => hub?.close());

  test('an offset beyond any integer is an empty page, not a 500', async () => {
    const response = await hub.api('/users?offset=99999999999999999999', {
      headers: { accept: 'application/jupyterhub-pagination+json' },
    });
    assert.equal(response.status, 200);
    const page = (await response.json()) as { items: unknown[]; _pagination: { total: number } };
    assert.deepEqual(page.items, []);
    assert.ok(page._pagination.total >= 1);
  });

  test('__proto__ and constructor keys in a user model are unknown keys', async () => {
    for (const body of [
      '{"usernames":["p1"],"__proto__":{"admin":true}}',
      '{"usernames":["p1"],"constructor":{"prototype":{"admin":true}}}',
    ]) {
      const response = await hub.api('/users', { method: 'POST', body });
      assert.equal(response.status, 400);
      assert.match(((await response.json()) as { message: string }).message, /^Invalid user model keys: /);
    }
    const response = await hub.api('/users/alice', { method: 'PATCH', body: '{"__proto__":{"admin":true}}' });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { admin?: boolean }).admin, undefined);
  });

  test('user names with control characters are invalid (400), in a path and in a bulk create', async () => {
    for (const name of ['a%00b', 'a%01b', 'a%7Fb']) {
      const response = await hub.api(`/users/${name}`, { method: 'POST' });
      assert.equal(response.status, 400, name);
    }
    const response = await hub.api('/users', {
      method: 'POST',
      body: JSON.stringify({ usernames: ['ok-name', 'bad\u0000name'] }),
    });
    assert.equal(response.status, 400);
  });
});
